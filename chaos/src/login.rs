//! The candidate login storm: `concurrency` workers log candidates in, each
//! login a fresh candidate while any are left (first logins check in, which
//! writes), then repeats. Bounded by a request count and a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::plans::{access_code, reg_no};
use crate::stats::Latencies;

pub struct LoginStorm {
    pub base: String,
    pub plan_id: String,
    pub candidates: usize,
    pub concurrency: usize,
    pub max_requests: u64,
    pub deadline: Duration,
}

pub struct LoginReport {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    pub first_error: Option<String>,
}

impl LoginReport {
    pub fn per_second(&self) -> f64 {
        (self.requests - self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run(storm: LoginStorm) -> anyhow::Result<LoginReport> {
    let client = crate::target::client(storm.concurrency)?;
    let url = format!("{}/api/v1/auth/candidate", storm.base);
    let next = Arc::new(AtomicUsize::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + storm.deadline;
    let mut workers = Vec::new();
    for _ in 0..storm.concurrency.max(1) {
        let (client, url, next, issued, plan_id) = (
            client.clone(),
            url.clone(),
            next.clone(),
            issued.clone(),
            storm.plan_id.clone(),
        );
        let (candidates, max_requests) = (storm.candidates.max(1), storm.max_requests);
        workers.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let (mut errors, mut first_error) = (0_u64, None);
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                let n = next.fetch_add(1, Ordering::Relaxed) % candidates + 1;
                let body =
                    json!({"plan_id": plan_id, "reg_no": reg_no(n), "access_code": access_code(n)});
                let sent = Instant::now();
                let outcome = client.post(&url).json(&body).send().await;
                let ok = match outcome {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        true
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        first_error.get_or_insert_with(|| format!("{status}: {text}"));
                        false
                    }
                    Err(error) => {
                        first_error.get_or_insert_with(|| error.to_string());
                        false
                    }
                };
                latencies.record(sent.elapsed());
                errors += u64::from(!ok);
            }
            (latencies, errors, first_error)
        }));
    }
    let mut report = LoginReport {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Latencies::default(),
        first_error: None,
    };
    for worker in workers {
        let (latencies, errors, first_error) = worker.await?;
        report.latencies.merge(&latencies);
        report.errors += errors;
        if report.first_error.is_none() {
            report.first_error = first_error;
        }
    }
    report.elapsed = started.elapsed();
    report.requests = report.latencies.count();
    Ok(report)
}
