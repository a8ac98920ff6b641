//! Grading (채점): the score of one answer against its question's key, so
//! results can be computed at any time from the stored answers and keys.
//!
//! The rules, per question kind (`points` is the question's weight):
//! - **No answer** — nothing saved, or a saved `null` (a cleared answer) —
//!   scores 0.
//! - **Ungraded** questions (key `null`) score 0 and do not count towards
//!   the maximum score: they are left to a human grader.
//! - **single**: full points when the chosen choice id equals the key, else 0.
//! - **multi**: partial credit,
//!   `points × max(0, (right − wrong) / |key|)`, where `right` counts the
//!   selected choices that are in the key and `wrong` the selected ones that
//!   are not. An exact match scores full points; a wrong choice cancels a
//!   right one, so selecting every choice scores 0 whenever at least half
//!   of the choices are wrong (with key {A, C} of {A, B, C} it scores half).
//!   An empty key means "no choice is right": an empty selection scores full
//!   points, any other 0.
//! - **text**: full points when the answer matches the key — one accepted
//!   text or a list of them — after both are normalized by
//!   [`normalize_text`]: Unicode NFKC, lowercase, surrounding whitespace
//!   trimmed and every inner run of whitespace collapsed to one space.
//!   Otherwise 0.
//!
//! Values of the wrong shape for their question (which validation keeps out
//! of the store) score 0. Scores are rounded to [`SCORE_DECIMALS`] decimal
//! places (sums too), so `0.1 + 0.2` reads `0.3` in a spreadsheet.

use std::collections::HashSet;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::question::{Question, QuestionKind};

/// Decimal places kept in scores.
pub const SCORE_DECIMALS: i32 = 6;

impl Question {
    /// Returns whether the question has an answer key to grade by.
    pub fn is_graded(&self) -> bool {
        !self.answer.is_null()
    }
}

/// Returns the points `value` earns on `question`; `None` is "not answered".
/// Always within `[0, question.points]`.
pub fn score_answer(question: &Question, value: Option<&Value>) -> f64 {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return 0.0;
    };
    let fraction = match (question.kind, &question.answer) {
        (_, Value::Null) => 0.0,
        (QuestionKind::Single, Value::String(key)) => match value {
            Value::String(choice) if choice == key => 1.0,
            _ => 0.0,
        },
        (QuestionKind::Multi, Value::Array(key)) => multi_fraction(key, value),
        (QuestionKind::Text, key) => text_fraction(key, value),
        _ => 0.0,
    };
    round_score(question.points * fraction)
}

/// The most points a plan's questions can earn: the sum of the graded ones.
pub fn max_score(questions: &[Question]) -> f64 {
    round_score(
        questions
            .iter()
            .filter(|question| question.is_graded())
            .map(|question| question.points)
            .sum(),
    )
}

/// Rounds a score (or a sum of scores) to [`SCORE_DECIMALS`] places.
pub fn round_score(score: f64) -> f64 {
    let scale = 10_f64.powi(SCORE_DECIMALS);
    let rounded = (score * scale).round() / scale;
    // -0.0 would print as "-0".
    if rounded == 0.0 { 0.0 } else { rounded }
}

/// Normalizes a text answer or key for comparison: Unicode NFKC (full-width
/// letters and digits become ASCII, the ideographic space a space, …),
/// lowercase, whitespace trimmed and inner runs collapsed to one space.
pub fn normalize_text(text: &str) -> String {
    // NFKC again after lowercasing: a lowercase mapping may leave a sequence
    // that is not in normal form, and the comparison must be stable.
    let folded: String = text
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `max(0, (right − wrong) / |key|)` for a list of selected choice ids.
fn multi_fraction(key: &[Value], value: &Value) -> f64 {
    let Value::Array(selected) = value else {
        return 0.0;
    };
    let key: HashSet<&str> = key.iter().filter_map(Value::as_str).collect();
    let mut seen = HashSet::new();
    let (mut right, mut wrong) = (0_usize, 0_usize);
    for choice in selected {
        let Some(choice) = choice.as_str() else {
            return 0.0;
        };
        // A choice counts once, even if a value listed it twice.
        if !seen.insert(choice) {
            continue;
        }
        if key.contains(choice) {
            right += 1;
        } else {
            wrong += 1;
        }
    }
    if key.is_empty() {
        return if seen.is_empty() { 1.0 } else { 0.0 };
    }
    let net = right.saturating_sub(wrong);
    net as f64 / key.len() as f64
}

/// 1 when the text matches one of the accepted texts after normalization.
fn text_fraction(key: &Value, value: &Value) -> f64 {
    let Value::String(answer) = value else {
        return 0.0;
    };
    let answer = normalize_text(answer);
    let matches = |accepted: &Value| {
        accepted
            .as_str()
            .is_some_and(|accepted| normalize_text(accepted) == answer)
    };
    let accepted = match key {
        Value::String(_) => matches(key),
        Value::Array(texts) => texts.iter().any(matches),
        _ => false,
    };
    if accepted { 1.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::domain::ids::QuestionId;

    fn question(kind: QuestionKind, choices: &[&str], answer: Value, points: f64) -> Question {
        Question {
            id: QuestionId::parse("q1").unwrap(),
            kind,
            choices: choices.iter().map(|c| c.to_string()).collect(),
            answer,
            points,
        }
    }

    fn score(question: &Question, value: Value) -> f64 {
        score_answer(question, Some(&value))
    }

    #[test]
    fn single_is_all_or_nothing() {
        let q = question(QuestionKind::Single, &["1", "2", "3"], json!("2"), 2.5);
        assert_eq!(score(&q, json!("2")), 2.5);
        assert_eq!(score(&q, json!("3")), 0.0);
        assert_eq!(score(&q, Value::Null), 0.0, "a cleared answer");
        assert_eq!(score_answer(&q, None), 0.0, "no answer");
        assert_eq!(score(&q, json!(["2"])), 0.0, "the wrong shape");
    }

    #[test]
    fn multi_gives_partial_credit_and_wrong_choices_cancel_right_ones() {
        // Key {A, C} of {A, B, C, D}, 4 points.
        let q = question(
            QuestionKind::Multi,
            &["A", "B", "C", "D"],
            json!(["A", "C"]),
            4.0,
        );
        assert_eq!(score(&q, json!(["C", "A"])), 4.0, "exact, in any order");
        assert_eq!(score(&q, json!(["A"])), 2.0, "1 of 2: (1 - 0) / 2");
        assert_eq!(score(&q, json!(["A", "C", "D"])), 2.0, "(2 - 1) / 2");
        assert_eq!(score(&q, json!(["A", "B"])), 0.0, "(1 - 1) / 2");
        assert_eq!(score(&q, json!(["B", "D"])), 0.0, "max(0, -2 / 2)");
        assert_eq!(score(&q, json!(["A", "B", "C", "D"])), 0.0, "everything");
        assert_eq!(score(&q, json!([])), 0.0);
        assert_eq!(score(&q, json!(["A", "A"])), 2.0, "a repeat counts once");
        assert_eq!(score(&q, json!("A")), 0.0, "the wrong shape");

        // Key {A, C} of {A, B, C}: selecting all is (2 - 1) / 2.
        let narrow = question(
            QuestionKind::Multi,
            &["A", "B", "C"],
            json!(["A", "C"]),
            3.0,
        );
        assert_eq!(score(&narrow, json!(["A", "B", "C"])), 1.5);
        // Three of three right, 1 point: thirds are rounded.
        let thirds = question(
            QuestionKind::Multi,
            &["A", "B", "C", "D"],
            json!(["A", "B", "C"]),
            1.0,
        );
        assert_eq!(score(&thirds, json!(["A"])), 0.333333);
        assert_eq!(score(&thirds, json!(["A", "B"])), 0.666667);
    }

    #[test]
    fn an_empty_multi_key_rewards_selecting_nothing() {
        let q = question(QuestionKind::Multi, &["A", "B"], json!([]), 2.0);
        assert_eq!(score(&q, json!([])), 2.0);
        assert_eq!(score(&q, json!(["A"])), 0.0);
        assert_eq!(score_answer(&q, None), 0.0, "but not answering is 0");
    }

    #[test]
    fn text_matches_after_normalization() {
        let q = question(QuestionKind::Text, &[], json!("Seoul City"), 3.0);
        assert_eq!(score(&q, json!("seoul city")), 3.0);
        assert_eq!(score(&q, json!("  SEOUL \t\n  CITY ")), 3.0);
        // Full-width letters and the ideographic space (NFKC).
        assert_eq!(score(&q, json!("ＳＥＯＵＬ\u{3000}ｃｉｔｙ")), 3.0);
        assert_eq!(score(&q, json!("SeoulCity")), 0.0);
        assert_eq!(score(&q, json!("Seoul City!")), 0.0);
        assert_eq!(score(&q, json!(["Seoul City"])), 0.0, "the wrong shape");
    }

    #[test]
    fn text_keys_may_list_accepted_answers() {
        let q = question(QuestionKind::Text, &[], json!(["서울", "Seoul"]), 1.5);
        assert_eq!(score(&q, json!("서울")), 1.5);
        assert_eq!(score(&q, json!(" seoul ")), 1.5);
        assert_eq!(score(&q, json!("부산")), 0.0);
        // Hangul in NFD (decomposed jamo) composes under NFKC.
        let decomposed: String = "서울".nfd().collect();
        assert_ne!(decomposed, "서울");
        assert_eq!(score(&q, json!(decomposed)), 1.5);
    }

    #[test]
    fn normalization_is_documented() {
        assert_eq!(
            normalize_text("  Ａｂｃ\u{3000}\u{3000}DEF\r\n ghi "),
            "abc def ghi"
        );
        assert_eq!(normalize_text("①"), "1");
        assert_eq!(normalize_text(" \t "), "");
    }

    #[test]
    fn ungraded_questions_score_nothing_and_are_not_in_the_maximum() {
        let essay = question(QuestionKind::Text, &[], Value::Null, 5.0);
        assert!(!essay.is_graded());
        assert_eq!(score(&essay, json!("anything")), 0.0);
        let single = question(QuestionKind::Single, &["1", "2"], json!("1"), 2.0);
        let multi = question(QuestionKind::Multi, &["A", "B"], json!(["A"]), 0.1);
        let text = question(QuestionKind::Text, &[], json!("x"), 0.2);
        assert_eq!(max_score(&[single, essay, multi, text]), 2.3);
        assert_eq!(max_score(&[]), 0.0);
    }

    fn any_question() -> impl Strategy<Value = Question> {
        let choices =
            || prop::collection::vec(prop::sample::select(vec!["A", "B", "C", "D", "E"]), 0..5);
        let points = 0.0_f64..1000.0;
        prop_oneof![
            (prop::sample::select(vec!["A", "B", "C"]), points.clone()).prop_map(
                |(key, points)| {
                    question(QuestionKind::Single, &["A", "B", "C"], json!(key), points)
                }
            ),
            (choices(), points.clone()).prop_map(|(mut key, points)| {
                key.sort_unstable();
                key.dedup();
                question(
                    QuestionKind::Multi,
                    &["A", "B", "C", "D", "E"],
                    json!(key),
                    points,
                )
            }),
            (prop::collection::vec("[a-zA-Z 가-힣]{0,8}", 1..3), points).prop_map(
                |(texts, points)| question(QuestionKind::Text, &[], json!(texts), points)
            ),
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            prop::sample::select(vec!["A", "B", "C", "D", "E"]).prop_map(|c| json!(c)),
            prop::collection::vec(prop::sample::select(vec!["A", "B", "C", "D", "E"]), 0..7)
                .prop_map(|c| json!(c)),
            "[a-zA-Z 가-힣\u{3000}\t]{0,12}".prop_map(|t| json!(t)),
        ]
    }

    proptest! {
        #[test]
        fn a_score_stays_within_zero_and_the_points(question in any_question(), value in any_value()) {
            let score = score_answer(&question, Some(&value));
            prop_assert!(score >= 0.0, "{score}");
            prop_assert!(score <= round_score(question.points), "{score} > {}", question.points);
        }

        #[test]
        fn the_key_itself_scores_full_points(question in any_question()) {
            let key = match (&question.kind, &question.answer) {
                // Any accepted text is a key.
                (QuestionKind::Text, Value::Array(texts)) => texts[0].clone(),
                (_, key) => key.clone(),
            };
            prop_assert_eq!(score_answer(&question, Some(&key)), round_score(question.points));
        }

        #[test]
        fn normalizing_twice_changes_nothing(text in "\\PC{0,16}") {
            let once = normalize_text(&text);
            prop_assert_eq!(normalize_text(&once), once);
        }
    }
}
