//! What travels between nodes: the messages of the cluster protocol,
//! carried as JSON in the transport's payloads.

use invigil_actors::domain::{PlanEvent, PlanId, PlanRuntime, RoomId};
use invigil_api::cluster::{ForwardedRequest, TunnelFrame, TunnelOpen};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

/// What travels between nodes (JSON in the transport's payload). A call
/// is answered with the reply its variant names; a cast with nothing.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
pub(super) enum Wire {
    /// call → `ForwardedResponse`
    Http(ForwardedRequest),
    /// call → `Result<(), String>`
    PlanChanged {
        plan_id: PlanId,
        room_id: RoomId,
        runtime: PlanRuntime,
        events: Vec<PlanEvent>,
    },
    /// call → `Result<(), String>`: `Ok` once the coordinator recorded it
    RoomDone { plan_id: PlanId, room_id: RoomId },
    /// cast, to every other node
    PlanReplaced { plan_id: PlanId },
    /// call → `Option<PresenceCounts>`
    Presence { plan_id: PlanId, room_id: RoomId },
    /// call → `Result<(), String>`: gateway → owner
    TunnelOpen { tunnel: u64, open: TunnelOpen },
    /// cast, gateway → owner
    TunnelUp { tunnel: u64, frame: TunnelFrame },
    /// cast, owner → gateway
    TunnelDown { tunnel: u64, frame: TunnelFrame },
}

/// Encodes a message (JSON).
pub(super) fn encode(wire: &Wire) -> Vec<u8> {
    encode_reply(wire)
}

/// Encodes a call's reply (JSON). Only a type that cannot be JSON (a bug)
/// fails; it is logged and sent as empty bytes, which the caller refuses
/// as malformed.
pub(super) fn encode_reply<T: Serialize + ?Sized>(reply: &T) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_else(|error| {
        tracing::error!(%error, "a cluster message could not be encoded");
        Vec::new()
    })
}

/// Decodes a call's reply from `node`; a reply that does not decode is
/// logged and reported as the error it is. An empty reply is what a node
/// sends for a message it serves as a cast (a node of the previous
/// version during a rolling upgrade) or for a call its task never answered.
pub(super) fn decode_reply<T: DeserializeOwned>(node: &str, bytes: &[u8]) -> Result<T, String> {
    if bytes.is_empty() {
        tracing::debug!(node = %node, "an empty reply from another node");
        return Err(format!("no reply from {node}"));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        warn!(node = %node, %error, "a malformed reply from another node");
        format!("malformed reply from {node}: {error}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message survives JSON both ways (an internally tagged enum
    /// cannot carry a bare string, which once emptied every text frame).
    #[test]
    fn every_message_round_trips() {
        let frames = [
            TunnelFrame::Text("{\"t\":\"hello\"}".into()),
            TunnelFrame::Binary,
            TunnelFrame::Close {
                code: 4000,
                reason: "reconnect".into(),
            },
        ];
        for frame in frames {
            for wire in [
                Wire::TunnelUp {
                    tunnel: 7,
                    frame: frame.clone(),
                },
                Wire::TunnelDown {
                    tunnel: 7,
                    frame: frame.clone(),
                },
            ] {
                let bytes = serde_json::to_vec(&wire).expect("encodes");
                let back: Wire = serde_json::from_slice(&bytes).expect("decodes");
                match back {
                    Wire::TunnelUp { frame: got, .. } | Wire::TunnelDown { frame: got, .. } => {
                        assert_eq!(got, frame);
                    }
                    other => panic!("decoded as {other:?}"),
                }
            }
        }
        let open = Wire::TunnelOpen {
            tunnel: 1,
            open: TunnelOpen {
                kind: invigil_api::cluster::SocketKind::Candidate,
                token: "t".into(),
                ip: None,
                room: None,
                traceparent: None,
            },
        };
        assert!(serde_json::from_slice::<Wire>(&serde_json::to_vec(&open).unwrap()).is_ok());
        let http = Wire::Http(ForwardedRequest {
            method: "GET".into(),
            uri: "/x".into(),
            headers: vec![("a".into(), "b".into())],
            body: b"{}".to_vec(),
        });
        assert!(serde_json::from_slice::<Wire>(&serde_json::to_vec(&http).unwrap()).is_ok());
    }
}
