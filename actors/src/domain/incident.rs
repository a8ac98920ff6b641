//! Incidents (부정행위 의심): raised by a client event, a proctor or a rule;
//! open until a proctor confirms or dismisses them.

use serde::{Deserialize, Serialize};

use super::ids::{CandidateId, PlanId, ProctorId, RoomId};
use super::time::Timestamp;

/// The longest incident kind, e.g. `focus_lost`.
pub const MAX_KIND_LEN: usize = 32;
/// The longest free-text note.
pub const MAX_NOTE_CHARS: usize = 2_000;

/// Checks free text written by people (incident notes, review actions, room
/// notices): `what` is named in the refusal. At most `max_chars`, not blank,
/// and no control characters but newline and tab — a NUL byte, for one,
/// cannot be stored by Postgres and would fail the write it travels in.
pub fn check_text(text: &str, max_chars: usize, what: &str) -> Result<(), super::DomainError> {
    let refuse = || {
        super::DomainError::InvalidText(format!(
            "{what} is 1 to {max_chars} characters, without control characters"
        ))
    };
    if text.trim().is_empty() || text.chars().count() > max_chars {
        return Err(refuse());
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(refuse());
    }
    Ok(())
}

/// The longest review action (e.g. `warn`, `expel`, a short phrase).
pub const MAX_ACTION_CHARS: usize = 200;

/// Returns whether `kind` is a snake_case word of at most [`MAX_KIND_LEN`] bytes.
pub fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
        && kind.as_bytes()[0].is_ascii_lowercase()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentSource {
    Client,
    Proctor,
    Rule,
}

impl IncidentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Proctor => "proctor",
            Self::Rule => "rule",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Client, Self::Proctor, Self::Rule]
            .into_iter()
            .find(|source| source.as_str() == value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Info, Self::Low, Self::Medium, Self::High]
            .into_iter()
            .find(|s| s.as_str() == value)
    }

    /// The severity of a kind when its source does not say otherwise.
    pub fn of_kind(kind: &str) -> Self {
        match kind {
            "copy_paste"
            | "copy_paste_detected"
            | "duplicate_login"
            | "ip_change"
            | "ip_changed"
            | "focus_lost_repeated"
            | "screen_share" => Self::High,
            "focus_lost" | "tab_switch" | "fullscreen_exit" | "went_offline" => Self::Medium,
            "connectivity" => Self::Info,
            _ => Self::Low,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    #[default]
    Open,
    Confirmed,
    Dismissed,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Confirmed => "confirmed",
            Self::Dismissed => "dismissed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Open, Self::Confirmed, Self::Dismissed]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub plan_id: PlanId,
    pub room_id: RoomId,
    /// `None` for a room-level incident (e.g. connectivity).
    pub candidate_id: Option<CandidateId>,
    pub kind: String,
    pub source: IncidentSource,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub note: Option<String>,
    /// What was done about it (e.g. `warn`, `expel`), once resolved.
    pub action: Option<String>,
    pub created_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub resolved_by: Option<ProctorId>,
}

/// Why an incident review is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the incident is already {0}")]
pub struct AlreadyResolved(pub &'static str);

impl Incident {
    /// Confirms or dismisses an open incident.
    pub fn resolve(
        &mut self,
        status: IncidentStatus,
        by: ProctorId,
        action: Option<String>,
        at: Timestamp,
    ) -> Result<(), AlreadyResolved> {
        if self.status != IncidentStatus::Open {
            return Err(AlreadyResolved(self.status.as_str()));
        }
        if status == IncidentStatus::Open {
            return Ok(());
        }
        self.status = status;
        self.resolved_by = Some(by);
        self.resolved_at = Some(at);
        self.action = action;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_snake_case_words() {
        assert!(is_valid_kind("focus_lost"));
        assert!(is_valid_kind("tab_switch2"));
        for bad in ["", "Focus", "_x", "a-b", "a b", &"a".repeat(33)] {
            assert!(!is_valid_kind(bad), "{bad}");
        }
    }

    #[test]
    fn an_incident_is_resolved_once() {
        let mut incident = Incident {
            id: "i1".into(),
            plan_id: PlanId::parse("p").unwrap(),
            room_id: RoomId::parse("r").unwrap(),
            candidate_id: None,
            kind: "copy_paste".into(),
            source: IncidentSource::Client,
            severity: Severity::of_kind("copy_paste"),
            status: IncidentStatus::Open,
            note: None,
            action: None,
            created_at: Timestamp::from_millis(0),
            resolved_at: None,
            resolved_by: None,
        };
        let proctor = ProctorId::parse("pr").unwrap();
        let at = Timestamp::from_millis(5);
        incident
            .resolve(
                IncidentStatus::Confirmed,
                proctor.clone(),
                Some("warn".into()),
                at,
            )
            .unwrap();
        assert_eq!(incident.status, IncidentStatus::Confirmed);
        assert_eq!(
            incident.resolve(IncidentStatus::Dismissed, proctor, None, at),
            Err(AlreadyResolved("confirmed"))
        );
    }
}
