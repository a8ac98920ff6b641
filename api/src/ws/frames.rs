//! Frames clients send, parsed strictly: an unknown frame type, an unknown
//! field or a wrong type is an `error` frame naming the problem.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub session: String,
    pub last_seq: u64,
}

/// Candidate → server (docs/wire-contract.md).
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum CandidateFrame {
    Hello {
        #[serde(default)]
        resume: Option<Resume>,
    },
    Hb {
        #[serde(default)]
        ts: Option<i64>,
    },
    Answer {
        q: String,
        value: Value,
        cseq: i64,
    },
    Event {
        kind: String,
        #[serde(default)]
        detail: Option<Value>,
    },
    /// A struct variant, so that unknown fields are refused like elsewhere
    /// (serde lets extra fields through on unit variants of tagged enums).
    Submit {},
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub candidate_id: Option<String>,
}

/// Proctor → server.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProctorFrame {
    Hello {},
    Hb {
        #[serde(default)]
        ts: Option<i64>,
    },
    Command {
        /// Echoed in the `command_ack`; one is made up when absent.
        #[serde(default)]
        id: Option<String>,
        target: Target,
        action: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        extend_s: Option<i64>,
    },
}

/// Why a frame was refused: a stable code and a message.
pub fn describe(error: &serde_json::Error) -> (&'static str, String) {
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message,
    };
    let code = if error.is_syntax() || error.is_eof() {
        "malformed_json"
    } else if message.starts_with("unknown variant") {
        "unknown_frame_type"
    } else if message.contains("missing field `t`") {
        "missing_frame_type"
    } else {
        "invalid_frame"
    };
    (code, message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<CandidateFrame, (&'static str, String)> {
        serde_json::from_str(text).map_err(|error| describe(&error))
    }

    #[test]
    fn candidate_frames_parse_as_documented() {
        assert_eq!(
            parse(r#"{"t":"hello"}"#),
            Ok(CandidateFrame::Hello { resume: None })
        );
        assert_eq!(
            parse(r#"{"t":"hello","resume":{"session":"s1","last_seq":41}}"#),
            Ok(CandidateFrame::Hello {
                resume: Some(Resume {
                    session: "s1".into(),
                    last_seq: 41
                })
            })
        );
        assert_eq!(
            parse(r#"{"t":"hb","ts":1700}"#),
            Ok(CandidateFrame::Hb { ts: Some(1700) })
        );
        assert_eq!(
            parse(r#"{"t":"answer","q":"q1","value":["A"],"cseq":17}"#),
            Ok(CandidateFrame::Answer {
                q: "q1".into(),
                value: json!(["A"]),
                cseq: 17
            })
        );
        assert_eq!(parse(r#"{"t":"submit"}"#), Ok(CandidateFrame::Submit {}));
    }

    #[test]
    fn bad_frames_name_their_problem() {
        assert_eq!(parse("{nope").unwrap_err().0, "malformed_json");
        assert_eq!(
            parse(r#"{"t":"dance"}"#).unwrap_err().0,
            "unknown_frame_type"
        );
        assert_eq!(parse(r#"{"q":"q1"}"#).unwrap_err().0, "missing_frame_type");
        assert_eq!(
            parse(r#"{"t":"answer","q":"q1","value":1}"#).unwrap_err().0,
            "invalid_frame"
        );
        assert_eq!(
            parse(r#"{"t":"answer","q":"q1","value":1,"cseq":1.5}"#)
                .unwrap_err()
                .0,
            "invalid_frame"
        );
        assert_eq!(
            parse(r#"{"t":"hb","extra":1}"#).unwrap_err().0,
            "invalid_frame"
        );
        // A stray field never submits an exam.
        assert_eq!(
            parse(r#"{"t":"submit","x":1}"#).unwrap_err().0,
            "invalid_frame"
        );
    }
}
