//! The region: a node's inbound endpoint, and the hand-made encoding of the
//! messages other nodes send it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::types::RegionHandler;

/// Process-group prefix of the regions; the node id completes the name.
const REGION_GROUP_PREFIX: &str = "invigil.region.";
/// Wire names of the two region messages; a new encoding gets a new name, so
/// mismatched nodes drop each other's messages instead of misreading them.
const CALL_VARIANT: &str = "invigil.region.call.v1";
const CAST_VARIANT: &str = "invigil.region.cast.v1";

/// The process group `node_id`'s region joins.
pub(super) fn region_group(node_id: &str) -> String {
    format!("{REGION_GROUP_PREFIX}{node_id}")
}

/// A message to a node's region. Encoded by hand (no serde, no derive) as
/// `payload ‖ from ‖ len(from): u16` for a call and
/// `payload ‖ from ‖ len(from): u16 ‖ incarnation: u64 ‖ seq: u64` for a
/// cast, integers big-endian; a call's reply is the handler's bytes as they
/// are.
pub(super) enum RegionMessage {
    Call(RegionCall),
    Cast(RegionCast),
}

/// A call from another node (or this one).
pub(super) struct RegionCall {
    pub(super) from: String,
    pub(super) payload: Vec<u8>,
    pub(super) reply: RpcReplyPort<Vec<u8>>,
}

/// A one-way message. `seq` counts the sender's casts to this node, from 1;
/// `incarnation` is random per sender process, so a restarted sender starts
/// a new count.
pub(super) struct RegionCast {
    pub(super) from: String,
    pub(super) incarnation: u64,
    pub(super) seq: u64,
    pub(super) payload: Vec<u8>,
}

impl fmt::Debug for RegionMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Call(call) => f
                .debug_struct("RegionCall")
                .field("from", &call.from)
                .field("payload_len", &call.payload.len())
                .finish_non_exhaustive(),
            Self::Cast(cast) => f
                .debug_struct("RegionCast")
                .field("from", &cast.from)
                .field("seq", &cast.seq)
                .field("payload_len", &cast.payload.len())
                .finish_non_exhaustive(),
        }
    }
}

impl ractor::Message for RegionMessage {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            Self::Call(RegionCall {
                from,
                payload,
                reply,
            }) => Ok(SerializedMessage::Call {
                variant: CALL_VARIANT.to_owned(),
                args: seal(payload, &from, &[])?,
                reply,
                metadata: None,
            }),
            Self::Cast(RegionCast {
                from,
                incarnation,
                seq,
                payload,
            }) => {
                let mut counters = [0u8; 16];
                counters[..8].copy_from_slice(&incarnation.to_be_bytes());
                counters[8..].copy_from_slice(&seq.to_be_bytes());
                Ok(SerializedMessage::Cast {
                    variant: CAST_VARIANT.to_owned(),
                    args: seal(payload, &from, &counters)?,
                    metadata: None,
                })
            }
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == CALL_VARIANT => {
                let (from, payload, _) = unseal::<0>(args)?;
                Ok(Self::Call(RegionCall {
                    from,
                    payload,
                    reply,
                }))
            }
            SerializedMessage::Cast { variant, args, .. } if variant == CAST_VARIANT => {
                let (from, payload, counters) = unseal::<16>(args)?;
                let (incarnation, seq) = counters.split_at(8);
                Ok(Self::Cast(RegionCast {
                    from,
                    incarnation: u64::from_be_bytes(
                        incarnation.try_into().map_err(|_| BoxedDowncastErr)?,
                    ),
                    seq: u64::from_be_bytes(seq.try_into().map_err(|_| BoxedDowncastErr)?),
                    payload,
                }))
            }
            _ => Err(BoxedDowncastErr),
        }
    }
}

/// Appends `from`, its length and `trailer` to `payload`.
fn seal(mut payload: Vec<u8>, from: &str, trailer: &[u8]) -> Result<Vec<u8>, BoxedDowncastErr> {
    let from_len = u16::try_from(from.len()).map_err(|_| BoxedDowncastErr)?;
    payload.reserve(from.len() + 2 + trailer.len());
    payload.extend_from_slice(from.as_bytes());
    payload.extend_from_slice(&from_len.to_be_bytes());
    payload.extend_from_slice(trailer);
    Ok(payload)
}

/// Splits what [`seal`] built into `from`, the payload and the trailer of
/// `N` bytes; the payload keeps the buffer.
fn unseal<const N: usize>(
    mut args: Vec<u8>,
) -> Result<(String, Vec<u8>, [u8; N]), BoxedDowncastErr> {
    let trailer_at = args.len().checked_sub(N).ok_or(BoxedDowncastErr)?;
    let trailer: [u8; N] = args[trailer_at..]
        .try_into()
        .map_err(|_| BoxedDowncastErr)?;
    let len_at = trailer_at.checked_sub(2).ok_or(BoxedDowncastErr)?;
    let from_len = u16::from_be_bytes([args[len_at], args[len_at + 1]]);
    let from_at = len_at
        .checked_sub(usize::from(from_len))
        .ok_or(BoxedDowncastErr)?;
    let from = std::str::from_utf8(&args[from_at..len_at])
        .map_err(|_| BoxedDowncastErr)?
        .to_owned();
    args.truncate(from_at);
    Ok((from, args, trailer))
}

/// The node's inbound endpoint: runs calls concurrently and casts in order
/// per sender.
pub(super) struct ShardRegion {
    pub(super) node_id: String,
    pub(super) handler: Arc<dyn RegionHandler>,
}

pub(super) struct RegionState {
    /// Sender node id → its casts' queue.
    lanes: HashMap<String, CastLane>,
}

/// One sender's casts, handled one after the other by a task of their own.
/// Unbounded like the region's own mailbox: a lane holds what the mailbox
/// would have held.
struct CastLane {
    incarnation: u64,
    last_seq: u64,
    queue: mpsc::UnboundedSender<Vec<u8>>,
}

impl CastLane {
    fn open(from: &str, incarnation: u64, handler: &Arc<dyn RegionHandler>) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<Vec<u8>>();
        let from = from.to_owned();
        let handler = Arc::clone(handler);
        tokio::spawn(async move {
            while let Some(payload) = pending.recv().await {
                handler.cast(from.clone(), payload).await;
            }
        });
        Self {
            incarnation,
            last_seq: 0,
            queue,
        }
    }
}

impl ShardRegion {
    fn admit_cast(&self, state: &mut RegionState, cast: RegionCast) {
        let lane = state
            .lanes
            .entry(cast.from.clone())
            .or_insert_with(|| CastLane::open(&cast.from, cast.incarnation, &self.handler));
        if lane.incarnation != cast.incarnation {
            lane.incarnation = cast.incarnation;
            lane.last_seq = 0;
        }
        if cast.seq <= lane.last_seq {
            debug!(from = %cast.from, seq = cast.seq, last_seq = lane.last_seq, "stale cast dropped");
            return;
        }
        lane.last_seq = cast.seq;
        if let Err(mpsc::error::SendError(payload)) = lane.queue.send(cast.payload) {
            // The lane's task died with a panicking handler; start another.
            warn!(from = %cast.from, "cast lane restarted after a handler panic");
            let mut fresh = CastLane::open(&cast.from, cast.incarnation, &self.handler);
            fresh.last_seq = cast.seq;
            let _ = fresh.queue.send(payload);
            *lane = fresh;
        }
    }
}

impl Actor for ShardRegion {
    type Msg = RegionMessage;
    type State = RegionState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<RegionMessage>,
        _args: (),
    ) -> Result<RegionState, ActorProcessingErr> {
        Ok(RegionState {
            lanes: HashMap::new(),
        })
    }

    /// Joins the region group; sessions copy it to every peer.
    async fn post_start(
        &self,
        myself: ActorRef<RegionMessage>,
        _state: &mut RegionState,
    ) -> Result<(), ActorProcessingErr> {
        pg::join(region_group(&self.node_id), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RegionMessage>,
        message: RegionMessage,
        state: &mut RegionState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegionMessage::Call(RegionCall {
                from,
                payload,
                reply,
            }) => {
                let handler = Arc::clone(&self.handler);
                tokio::spawn(async move {
                    if reply.is_closed() {
                        return; // the caller gave up already
                    }
                    let answer = handler.call(from, payload).await;
                    let _ = reply.send(answer);
                });
            }
            RegionMessage::Cast(cast) => self.admit_cast(state, cast),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use ractor::Message;
    use tokio::time::Instant;

    use super::super::peers::lock;
    use super::*;

    fn cast(from: &str, seq: u64, payload: &[u8]) -> RegionMessage {
        RegionMessage::Cast(RegionCast {
            from: from.to_owned(),
            incarnation: 0xfeed_beef,
            seq,
            payload: payload.to_vec(),
        })
    }

    #[test]
    fn a_cast_survives_its_encoding() {
        let serialized = cast("node-7", 42, br#"{"a":1}"#).serialize().unwrap();
        let RegionMessage::Cast(decoded) = RegionMessage::deserialize(serialized).unwrap() else {
            panic!("not a cast");
        };
        assert_eq!(decoded.from, "node-7");
        assert_eq!(decoded.incarnation, 0xfeed_beef);
        assert_eq!(decoded.seq, 42);
        assert_eq!(decoded.payload, br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn a_call_survives_its_encoding_and_keeps_its_reply_port() {
        let (reply, answer) = ractor::concurrency::oneshot();
        let call = RegionMessage::Call(RegionCall {
            from: "node-1".to_owned(),
            payload: Vec::new(),
            reply: reply.into(),
        });
        let RegionMessage::Call(decoded) =
            RegionMessage::deserialize(call.serialize().unwrap()).unwrap()
        else {
            panic!("not a call");
        };
        assert_eq!(decoded.from, "node-1");
        assert!(decoded.payload.is_empty());
        decoded.reply.send(b"pong".to_vec()).unwrap();
        assert_eq!(answer.await.unwrap(), b"pong");
    }

    #[test]
    fn short_or_foreign_messages_are_refused_without_panicking() {
        let SerializedMessage::Cast { args, .. } = cast("node-2", 1, b"xyz").serialize().unwrap()
        else {
            panic!("not a cast");
        };
        for len in 0..args.len() {
            let shortened = SerializedMessage::Cast {
                variant: CAST_VARIANT.to_owned(),
                args: args[..len].to_vec(),
                metadata: None,
            };
            let decoded = RegionMessage::deserialize(shortened);
            // Below the trailer there is nothing to decode.
            assert!(len >= 18 || decoded.is_err(), "{len} bytes decoded");
        }
        let foreign = SerializedMessage::Cast {
            variant: "invigil.region.cast.v0".to_owned(),
            args,
            metadata: None,
        };
        assert!(RegionMessage::deserialize(foreign).is_err());
    }

    /// Records casts; calls are not expected.
    #[derive(Default)]
    struct CastLog {
        casts: Mutex<Vec<(String, Vec<u8>)>>,
    }

    #[async_trait]
    impl RegionHandler for CastLog {
        async fn call(&self, _from: String, payload: Vec<u8>) -> Vec<u8> {
            payload
        }

        async fn cast(&self, from: String, payload: Vec<u8>) {
            lock(&self.casts).push((from, payload));
        }
    }

    #[tokio::test]
    async fn a_region_never_delivers_a_cast_older_than_one_it_delivered() {
        let log = Arc::new(CastLog::default());
        let region = ShardRegion {
            node_id: "node-1".to_owned(),
            handler: log.clone(),
        };
        let mut state = RegionState {
            lanes: HashMap::new(),
        };
        let cast = |from: &str, incarnation: u64, seq: u64| RegionCast {
            from: from.to_owned(),
            incarnation,
            seq,
            payload: format!("{from}/{incarnation}/{seq}").into_bytes(),
        };
        for (from, incarnation, seq) in [
            ("node-2", 7, 1),
            ("node-2", 7, 2),
            ("node-2", 7, 2), // a duplicate
            ("node-2", 7, 4), // 3 was lost: a gap
            ("node-2", 7, 3), // late: dropped, not reordered
            ("node-3", 1, 1), // another sender counts on its own
            ("node-2", 8, 1), // node-2 restarted: a new count
        ] {
            region.admit_cast(&mut state, cast(from, incarnation, seq));
        }
        let delivered = |log: &CastLog| {
            lock(&log.casts)
                .iter()
                .map(|(_, payload)| String::from_utf8(payload.clone()).unwrap())
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while delivered(&log).len() < 5 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let mut from_node_2: Vec<String> = delivered(&log)
            .into_iter()
            .filter(|cast| cast.starts_with("node-2"))
            .collect();
        assert_eq!(
            from_node_2,
            ["node-2/7/1", "node-2/7/2", "node-2/7/4", "node-2/8/1"]
        );
        from_node_2.clear();
        assert!(delivered(&log).contains(&"node-3/1/1".to_owned()));
    }
}
