//! Generated plans: `rooms` of `per_room` candidates (`B000001`… with access
//! codes `code-000001`…), `proctors_per_room` proctors per room, 20 questions.

use serde_json::{Value, json};

pub struct PlanShape {
    pub candidates: usize,
    pub per_room: usize,
    pub proctors_per_room: usize,
}

pub fn reg_no(n: usize) -> String {
    format!("B{n:06}")
}

pub fn access_code(n: usize) -> String {
    format!("code-{n:06}")
}

pub fn plan(title: &str, shape: &PlanShape) -> Value {
    let rooms = shape.candidates.div_ceil(shape.per_room).max(1);
    let questions: Vec<Value> = (1..=20)
        .map(|q| match q {
            1..=12 => json!({"id": format!("q{q:02}"), "kind": "single", "choices": ["1", "2", "3", "4"], "answer": "2"}),
            13..=16 => json!({"id": format!("q{q:02}"), "kind": "multi", "choices": ["A", "B", "C", "D"], "answer": ["A", "C"]}),
            _ => json!({"id": format!("q{q:02}"), "kind": "text", "answer": "seoul"}),
        })
        .collect();
    json!({
        "title": title,
        "starts_at": "2026-12-01T09:00:00Z",
        "duration_s": 3600,
        "questions": questions,
        "rooms": (1..=rooms).map(|r| json!({"id": format!("room-{r}"), "name": format!("Room {r}"), "capacity": shape.per_room})).collect::<Vec<_>>(),
        "proctors": (1..=rooms).flat_map(|r| (1..=shape.proctors_per_room).map(move |p| json!({
            "id": format!("proctor-{r}-{p}"), "name": format!("Proctor {r}-{p}"), "login": format!("proctor-{r}-{p}"),
            "password": format!("password-{r}-{p}"), "room_ids": [format!("room-{r}")]
        }))).collect::<Vec<_>>(),
        "candidates": (1..=shape.candidates).map(|n| json!({
            "id": format!("cand-{n:06}"), "reg_no": reg_no(n), "name": format!("Candidate {n}"),
            "room_id": format!("room-{}", (n - 1) / shape.per_room + 1), "seat": (n - 1) % shape.per_room + 1,
            "access_code": access_code(n)
        })).collect::<Vec<_>>()
    })
}
