//! Questions, their kinds, and which answer values fit them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::QuestionId;

/// The most choices a question may offer.
pub const MAX_CHOICES: usize = 64;
/// The longest choice id.
pub const MAX_CHOICE_LEN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    /// Exactly one of the choices.
    Single,
    /// Any set of distinct choices.
    Multi,
    /// Free text.
    Text,
}

impl QuestionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Multi => "multi",
            Self::Text => "text",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "single" => Some(Self::Single),
            "multi" => Some(Self::Multi),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

/// A question as the exam needs it: what may be answered and the key to grade by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: QuestionId,
    pub kind: QuestionKind,
    /// Choice ids, in display order; empty for text questions.
    pub choices: Vec<String>,
    /// The answer key: a choice id (single), a list of choice ids (multi), or
    /// an accepted text or list of accepted texts (text). `Null` when ungraded.
    pub answer: Value,
    pub points: f64,
}

/// Why a question definition or an answer value is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueProblem(pub String);

impl Question {
    /// Checks the definition itself: choices fit the kind and the key names
    /// existing choices.
    pub fn check_definition(&self) -> Result<(), ValueProblem> {
        match self.kind {
            QuestionKind::Single | QuestionKind::Multi => {
                if self.choices.len() < 2 {
                    return problem("a choice question needs at least 2 choices");
                }
                if self.choices.len() > MAX_CHOICES {
                    return problem(format!("at most {MAX_CHOICES} choices"));
                }
                let mut seen = HashSet::new();
                for choice in &self.choices {
                    if choice.is_empty() || choice.chars().count() > MAX_CHOICE_LEN {
                        return problem(format!("choice ids are 1 to {MAX_CHOICE_LEN} characters"));
                    }
                    if !seen.insert(choice.as_str()) {
                        return problem(format!("choice {choice:?} appears twice"));
                    }
                }
            }
            QuestionKind::Text => {
                if !self.choices.is_empty() {
                    return problem("a text question has no choices");
                }
            }
        }
        if !self.points.is_finite() || self.points < 0.0 {
            return problem("points must be a finite number >= 0");
        }
        self.check_key()
    }

    fn check_key(&self) -> Result<(), ValueProblem> {
        match (&self.answer, self.kind) {
            (Value::Null, _) => Ok(()),
            (Value::String(choice), QuestionKind::Single) => self.check_choice(choice),
            (Value::Array(choices), QuestionKind::Multi) => {
                self.check_choice_set(choices).map(|_| ())
            }
            (Value::String(_), QuestionKind::Text) => Ok(()),
            (Value::Array(texts), QuestionKind::Text)
                if !texts.is_empty() && texts.iter().all(Value::is_string) =>
            {
                Ok(())
            }
            (_, kind) => problem(format!(
                "the answer key does not fit a {} question",
                kind.as_str()
            )),
        }
    }

    /// Checks that `value` is an acceptable answer; `null` clears an answer.
    pub fn check_value(&self, value: &Value, max_text_chars: usize) -> Result<(), ValueProblem> {
        match (value, self.kind) {
            (Value::Null, _) => Ok(()),
            (Value::String(choice), QuestionKind::Single) => self.check_choice(choice),
            (Value::Array(choices), QuestionKind::Multi) => {
                self.check_choice_set(choices).map(|_| ())
            }
            (Value::String(text), QuestionKind::Text) => {
                if text.chars().count() > max_text_chars {
                    problem(format!(
                        "text answers are at most {max_text_chars} characters"
                    ))
                } else {
                    Ok(())
                }
            }
            (_, QuestionKind::Single) => problem("a single-choice answer is one choice id"),
            (_, QuestionKind::Multi) => problem("a multiple-choice answer is a list of choice ids"),
            (_, QuestionKind::Text) => problem("a text answer is a string"),
        }
    }

    fn check_choice(&self, choice: &str) -> Result<(), ValueProblem> {
        if self.choices.iter().any(|known| known == choice) {
            Ok(())
        } else {
            problem(format!("{choice:?} is not a choice of this question"))
        }
    }

    fn check_choice_set<'v>(&self, values: &'v [Value]) -> Result<HashSet<&'v str>, ValueProblem> {
        let mut seen = HashSet::new();
        for value in values {
            let Value::String(choice) = value else {
                return problem("choice ids are strings");
            };
            self.check_choice(choice)?;
            if !seen.insert(choice.as_str()) {
                return problem(format!("choice {choice:?} appears twice"));
            }
        }
        Ok(seen)
    }
}

fn problem<T>(message: impl Into<String>) -> Result<T, ValueProblem> {
    Err(ValueProblem(message.into()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn question(kind: QuestionKind, choices: &[&str], answer: Value) -> Question {
        Question {
            id: QuestionId::parse("q1").unwrap(),
            kind,
            choices: choices.iter().map(|c| c.to_string()).collect(),
            answer,
            points: 1.0,
        }
    }

    #[test]
    fn single_accepts_one_known_choice() {
        let q = question(QuestionKind::Single, &["A", "B"], json!("A"));
        assert!(q.check_definition().is_ok());
        assert!(q.check_value(&json!("B"), 100).is_ok());
        assert!(q.check_value(&Value::Null, 100).is_ok());
        assert!(q.check_value(&json!("C"), 100).is_err());
        assert!(q.check_value(&json!(["A"]), 100).is_err());
        assert!(q.check_value(&json!(1), 100).is_err());
    }

    #[test]
    fn multi_accepts_distinct_known_choices() {
        let q = question(QuestionKind::Multi, &["A", "B", "C"], json!(["A", "C"]));
        assert!(q.check_definition().is_ok());
        assert!(q.check_value(&json!([]), 100).is_ok());
        assert!(q.check_value(&json!(["C", "A"]), 100).is_ok());
        assert!(q.check_value(&json!(["A", "A"]), 100).is_err());
        assert!(q.check_value(&json!(["Z"]), 100).is_err());
        assert!(q.check_value(&json!("A"), 100).is_err());
    }

    #[test]
    fn text_is_bounded() {
        let q = question(QuestionKind::Text, &[], json!(["서울", "Seoul"]));
        assert!(q.check_definition().is_ok());
        assert!(q.check_value(&json!("가나다"), 3).is_ok());
        assert!(q.check_value(&json!("가나다라"), 3).is_err());
        assert!(q.check_value(&json!(["x"]), 3).is_err());
    }

    #[test]
    fn definitions_are_checked() {
        assert!(
            question(QuestionKind::Single, &["A"], Value::Null)
                .check_definition()
                .is_err()
        );
        assert!(
            question(QuestionKind::Single, &["A", "A"], Value::Null)
                .check_definition()
                .is_err()
        );
        assert!(
            question(QuestionKind::Single, &["A", "B"], json!("C"))
                .check_definition()
                .is_err()
        );
        assert!(
            question(QuestionKind::Text, &["A"], Value::Null)
                .check_definition()
                .is_err()
        );
        let mut negative = question(QuestionKind::Text, &[], Value::Null);
        negative.points = -1.0;
        assert!(negative.check_definition().is_err());
    }
}
