//! A plan's results (`GET /api/v1/admin/plans/{plan_id}/results`): every
//! candidate with their state, current answers and score, graded at request
//! time from the stored answers and the questions' keys
//! ([`invigil_actors::domain::grading`]); as JSON, or as a CSV download.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use invigil_actors::domain::grading::{max_score, round_score, score_answer};
use invigil_actors::domain::{PlanId, PlanState, Question, QuestionKind};
use invigil_actors::ports::{CandidateResult, PlanResults};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object, ResponseContent};
use serde_json::Value;

use super::dto::QuestionKindBody;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::to_datetime;

/// The CSV media type; UTF-8 with a byte order mark.
pub const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";
/// Written first so spreadsheets read the file as UTF-8 (Hangul names).
const UTF8_BOM: &str = "\u{FEFF}";
/// The fixed CSV columns; one column per question follows, named by its id.
pub const CSV_COLUMNS: [&str; 9] = [
    "candidate_id",
    "reg_no",
    "name",
    "room_id",
    "seat",
    "state",
    "submitted_at",
    "score",
    "max_score",
];

/// How results are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ResultsFormat {
    #[default]
    Json,
    Csv,
}

/// A question as results list it.
#[derive(Clone, Debug, PartialEq, Object)]
#[oai(rename = "ResultQuestion")]
pub struct ResultQuestionView {
    pub question_id: String,
    pub kind: QuestionKindBody,
    pub points: f64,
    /// False when the question has no answer key: it scores 0 here and is
    /// not part of `max_score` (left to a human grader).
    pub graded: bool,
}

/// A candidate's current answer to one question, with the points it earns.
#[derive(Clone, Debug, PartialEq, Object)]
#[oai(rename = "ResultAnswer")]
pub struct ResultAnswerView {
    pub question_id: String,
    /// As saved: a choice id, a list of choice ids or a text; null when cleared.
    pub value: Value,
    pub version: i64,
    /// The points earned; null for an ungraded question.
    pub points: Option<f64>,
}

/// One candidate's results.
#[derive(Clone, Debug, PartialEq, Object)]
#[oai(rename = "CandidateResult")]
pub struct CandidateResultView {
    pub candidate_id: String,
    pub reg_no: String,
    pub name: String,
    pub room_id: String,
    pub seat: Option<String>,
    pub state: String,
    pub submitted_at: Option<DateTime<Utc>>,
    /// The sum of the answers' points; 0 for a candidate without answers.
    pub score: f64,
    /// Every question answered, in plan order.
    pub answers: Vec<ResultAnswerView>,
}

/// `GET /api/v1/admin/plans/{plan_id}/results`.
#[derive(Clone, Debug, PartialEq, Object)]
#[oai(rename = "PlanResults")]
pub struct PlanResultsView {
    pub plan_id: String,
    pub title: String,
    /// `ended` or `finalized`.
    pub state: String,
    pub finalized: bool,
    pub ended_at: Option<DateTime<Utc>>,
    pub finalized_at: Option<DateTime<Utc>>,
    /// The sum of the graded questions' points.
    pub max_score: f64,
    /// In plan order.
    pub questions: Vec<ResultQuestionView>,
    /// Every candidate, in import order — absent ones too.
    pub candidates: Vec<CandidateResultView>,
}

#[derive(ResponseContent)]
pub enum ResultsContent {
    Json(Json<PlanResultsView>),
    /// RFC 4180 CSV with a UTF-8 byte order mark: a header row, then one
    /// row per candidate.
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(Binary<Vec<u8>>),
}

#[derive(ApiResponse)]
pub enum ResultsResponse {
    /// The results, as JSON or (`?format=csv`) as a CSV attachment.
    #[oai(status = 200)]
    Ok(
        ResultsContent,
        /// `attachment; filename="<plan_id>-results.csv"` for CSV.
        #[oai(header = "Content-Disposition")]
        Option<String>,
    ),
}

/// Reads, grades and renders a plan's results.
pub async fn plan_results(
    state: &AppState,
    plan_id: &PlanId,
    format: ResultsFormat,
) -> Result<ResultsResponse, ApiError> {
    let results = state
        .plans
        .plan_results(plan_id)
        .await?
        .ok_or_else(|| ApiError::plan_not_found(plan_id))?;
    let plan_state = results.runtime.state;
    if !plan_state.is_over() {
        return Err(ApiError::conflict(
            "results_not_ready",
            format!(
                "plan {plan_id} is {}; results are served once it has ended",
                plan_state.as_str()
            ),
        ));
    }
    // The end submits every open sheet and marks who never came absent; a
    // room that has not confirmed it yet (the plan's keeper is finishing
    // it) would make for results that still change.
    if let Some(sitting) = results
        .candidates
        .iter()
        .find(|candidate| !candidate.state.is_final())
    {
        return Err(ApiError::conflict(
            "results_not_ready",
            format!(
                "plan {plan_id} has ended but candidate {} is still {}; retry in a few seconds",
                sitting.candidate_id,
                sitting.state.as_str()
            ),
        ));
    }
    let view = grade(&results);
    Ok(match format {
        ResultsFormat::Json => ResultsResponse::Ok(ResultsContent::Json(Json(view)), None),
        ResultsFormat::Csv => ResultsResponse::Ok(
            ResultsContent::Csv(Binary(to_csv(&view, &results.questions)?)),
            Some(format!("attachment; filename=\"{plan_id}-results.csv\"")),
        ),
    })
}

/// Grades every candidate's answers against the keys.
pub fn grade(results: &PlanResults) -> PlanResultsView {
    let questions: HashMap<&str, &Question> = results
        .questions
        .iter()
        .map(|question| (question.id.as_str(), question))
        .collect();
    PlanResultsView {
        plan_id: results.plan_id.to_string(),
        title: results.title.clone(),
        state: results.runtime.state.as_str().to_string(),
        finalized: results.runtime.state == PlanState::Finalized,
        ended_at: results.runtime.ended_at.map(to_datetime),
        finalized_at: results.runtime.finalized_at.map(to_datetime),
        max_score: max_score(&results.questions),
        questions: results
            .questions
            .iter()
            .map(|question| ResultQuestionView {
                question_id: question.id.to_string(),
                kind: question.kind.into(),
                points: question.points,
                graded: question.is_graded(),
            })
            .collect(),
        candidates: results
            .candidates
            .iter()
            .map(|candidate| grade_candidate(candidate, &questions))
            .collect(),
    }
}

fn grade_candidate(
    candidate: &CandidateResult,
    questions: &HashMap<&str, &Question>,
) -> CandidateResultView {
    let answers: Vec<ResultAnswerView> = candidate
        .answers
        .iter()
        .map(|answer| {
            let points = questions
                .get(answer.question_id.as_str())
                .filter(|question| question.is_graded())
                .map(|question| score_answer(question, Some(&answer.value)));
            ResultAnswerView {
                question_id: answer.question_id.to_string(),
                value: answer.value.clone(),
                version: answer.version,
                points,
            }
        })
        .collect();
    let score = round_score(answers.iter().filter_map(|answer| answer.points).sum());
    CandidateResultView {
        candidate_id: candidate.candidate_id.to_string(),
        reg_no: candidate.reg_no.clone(),
        name: candidate.name.clone(),
        room_id: candidate.room_id.to_string(),
        seat: candidate.seat.clone(),
        state: candidate.state.as_str().to_string(),
        submitted_at: candidate.submitted_at.map(to_datetime),
        score,
        answers,
    }
}

/// Renders graded results as CSV: a UTF-8 byte order mark, a header row,
/// then one row per candidate; CRLF line ends, fields quoted when they hold
/// a comma, a quote, CR or LF, quotes doubled (RFC 4180). Fields are written
/// verbatim.
pub fn to_csv(view: &PlanResultsView, questions: &[Question]) -> Result<Vec<u8>, ApiError> {
    let column: HashMap<&str, usize> = questions
        .iter()
        .enumerate()
        .map(|(index, question)| (question.id.as_str(), index))
        .collect();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(UTF8_BOM.as_bytes().to_vec());
    let header = CSV_COLUMNS
        .iter()
        .copied()
        .chain(questions.iter().map(|question| question.id.as_str()));
    writer.write_record(header).map_err(ApiError::internal)?;
    let max_score = view.max_score.to_string();
    for candidate in &view.candidates {
        let mut answers: Vec<String> = vec![String::new(); questions.len()];
        for answer in &candidate.answers {
            if let Some(&index) = column.get(answer.question_id.as_str()) {
                answers[index] = answer_text(&questions[index], &answer.value);
            }
        }
        let fixed = [
            candidate.candidate_id.clone(),
            candidate.reg_no.clone(),
            candidate.name.clone(),
            candidate.room_id.clone(),
            candidate.seat.clone().unwrap_or_default(),
            candidate.state.clone(),
            candidate
                .submitted_at
                .map(|at| at.to_rfc3339())
                .unwrap_or_default(),
            candidate.score.to_string(),
            max_score.clone(),
        ];
        writer
            .write_record(fixed.iter().chain(&answers))
            .map_err(ApiError::internal)?;
    }
    writer.into_inner().map_err(ApiError::internal)
}

/// An answer as one CSV field: the choice id (single), the choice ids in
/// the question's choice order joined by `;` (multi), the text itself
/// (text); empty when cleared.
pub fn answer_text(question: &Question, value: &Value) -> String {
    match (question.kind, value) {
        (_, Value::Null) => String::new(),
        (QuestionKind::Single | QuestionKind::Text, Value::String(text)) => text.clone(),
        (QuestionKind::Multi, Value::Array(selected)) => {
            let mut choices: Vec<(usize, &str)> = selected
                .iter()
                .filter_map(Value::as_str)
                .map(|choice| {
                    let position = question
                        .choices
                        .iter()
                        .position(|known| known == choice)
                        .unwrap_or(usize::MAX);
                    (position, choice)
                })
                .collect();
            choices.sort_by_key(|(position, _)| *position);
            choices
                .into_iter()
                .map(|(_, choice)| choice)
                .collect::<Vec<_>>()
                .join(";")
        }
        // Validation keeps other shapes out of the store; show what is there.
        (_, other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use invigil_actors::domain::{
        CandidateId, CandidateState, PlanRuntime, QuestionId, RoomId, Timestamp,
    };
    use invigil_actors::ports::ResultAnswer;
    use serde_json::json;

    use super::*;

    fn question(id: &str, kind: QuestionKind, choices: &[&str], key: Value) -> Question {
        Question {
            id: QuestionId::parse(id).unwrap(),
            kind,
            choices: choices.iter().map(|c| c.to_string()).collect(),
            answer: key,
            points: 2.0,
        }
    }

    fn sample() -> PlanResults {
        let answer = |question: &str, value: Value| ResultAnswer {
            question_id: QuestionId::parse(question).unwrap(),
            value,
            version: 1,
        };
        let candidate = |id: &str, name: &str, answers| CandidateResult {
            candidate_id: CandidateId::parse(id).unwrap(),
            reg_no: format!("R-{id}"),
            name: name.into(),
            room_id: RoomId::parse("r1").unwrap(),
            seat: None,
            state: CandidateState::Submitted,
            submitted_at: Some(Timestamp::from_millis(1_764_579_600_000)),
            answers,
        };
        PlanResults {
            plan_id: PlanId::parse("p1").unwrap(),
            title: "T".into(),
            runtime: PlanRuntime {
                state: PlanState::Ended,
                ..PlanRuntime::default()
            },
            questions: vec![
                question("q1", QuestionKind::Single, &["1", "2"], json!("1")),
                question("q2", QuestionKind::Multi, &["A", "B", "C"], json!(["A"])),
                question("q3", QuestionKind::Text, &[], Value::Null),
            ],
            candidates: vec![
                candidate(
                    "c1",
                    "김수험,\"x\"",
                    vec![
                        answer("q1", json!("1")),
                        answer("q2", json!(["C", "A"])),
                        answer("q3", json!("a,\"b\"\r\nc")),
                    ],
                ),
                candidate("c2", "Lee", vec![answer("q1", Value::Null)]),
            ],
        }
    }

    #[test]
    fn grading_sums_graded_answers_only() {
        let view = grade(&sample());
        assert_eq!(view.max_score, 4.0);
        assert!(!view.finalized);
        let first = &view.candidates[0];
        assert_eq!(first.score, 2.0, "2 + max(0, (1 - 1) / 1) × 2 + ungraded");
        assert_eq!(
            first
                .answers
                .iter()
                .map(|answer| answer.points)
                .collect::<Vec<_>>(),
            vec![Some(2.0), Some(0.0), None]
        );
        assert_eq!(view.candidates[1].score, 0.0, "a cleared answer");
    }

    #[test]
    fn csv_has_a_bom_crlf_and_quotes_what_needs_it() {
        let results = sample();
        let csv = to_csv(&grade(&results), &results.questions).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(
            text,
            "\u{FEFF}candidate_id,reg_no,name,room_id,seat,state,submitted_at,score,max_score,q1,q2,q3\r\n\
             c1,R-c1,\"김수험,\"\"x\"\"\",r1,,submitted,2025-12-01T09:00:00+00:00,2,4,1,A;C,\"a,\"\"b\"\"\r\nc\"\r\n\
             c2,R-c2,Lee,r1,,submitted,2025-12-01T09:00:00+00:00,0,4,,,\r\n"
        );
    }
}
