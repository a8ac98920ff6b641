//! The drill's figures, from what the clients recorded (not from the
//! nodes): time for every candidate to save again, refusals by code,
//! clocks that jumped, and series over time for the report's charts.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::proctors::{Ack, Command, id_of};
use super::traffic::Rider;

/// A gap between acks longer than this is an outage.
const SILENCE: Duration = Duration::from_millis(500);

/// p50 / p99 / max in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Spread {
    fn of(mut values: Vec<Duration>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort();
        let at = |q: usize| values[(values.len() * q).div_ceil(100).max(1) - 1].as_millis() as u64;
        Self {
            count: values.len(),
            p50_ms: at(50),
            p99_ms: at(99),
            max_ms: values.last().map_or(0, |max| max.as_millis() as u64),
        }
    }
}

/// When the traffic began, and the fault began and ended.
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub began: Instant,
    pub fault_at: Instant,
    pub fault_ends: Instant,
}

/// The node the fault hit: its index and id, and who owned each room
/// (`room-1` first) before the fault.
#[derive(Clone, Copy, Debug)]
pub struct Victim<'a> {
    pub index: usize,
    pub id: &'a str,
    pub room_owners: Option<&'a [String]>,
}

#[derive(Debug, Default, Serialize)]
pub struct Figures {
    /// Candidates that saved again after the fault, of all.
    pub saving_again: usize,
    pub candidates: usize,
    /// Fault → the ack that ended each candidate's outage: every candidate,
    /// and the unlucky ones (on the victim's sockets or in its rooms).
    pub recovery_all: Spread,
    pub recovery_unlucky: Spread,
    /// Every candidate's longest pause between two acks from just before
    /// the fault on (what a candidate lives; for a drain it leaves out the
    /// announce period, during which saves go on).
    pub longest_pause: Spread,
    pub on_victims_sockets: usize,
    pub in_victims_rooms: usize,
    /// Error frames after the fault, by code.
    pub refused_by_code: BTreeMap<String, usize>,
    /// Failed connection attempts (the reconnect rule's), over all.
    pub failed_attempts: u64,
    pub reconnects: usize,
    /// The largest difference between a candidate's remaining time and
    /// what the wall clock says it should be, between two observations.
    pub clock_jump_max_s: i64,
    pub acks_total: usize,
    /// Acks per second since the traffic started (one bucket a second).
    pub acks_per_second: Vec<usize>,
    /// Connected candidates, sampled every second.
    pub connected: Vec<usize>,
    /// Recovery time of every candidate, ms (the distribution chart).
    pub recoveries_ms: Vec<u64>,
    /// When the fault started and ended, seconds since the traffic started.
    pub fault_at_s: f64,
    pub fault_ends_s: f64,
    /// Candidates that gave up (could not be welcomed before the end).
    pub gave_up: Vec<String>,
    /// The ten slowest to save again: who, where, how long.
    pub slowest: Vec<String>,
    /// Proctors' warnings sent before / from the fault on, how many reached
    /// their candidate, and how fast (sent → control at the candidate).
    pub commands_before: usize,
    pub delivered_before: usize,
    pub commands_after: usize,
    pub delivered_after: usize,
    /// Warnings from the fault on by their `command_ack`: confirmed
    /// delivered, committed for a candidate without a socket, refused (by
    /// code), never confirmed (the proctor's socket ended first).
    pub confirmed_after: usize,
    pub undeliverable_after: usize,
    pub refused_after: BTreeMap<String, usize>,
    pub unconfirmed_after: usize,
    /// Warnings the server confirmed as delivered that never reached their
    /// candidate (any time): each fails the drill.
    pub confirmed_not_reached: Vec<String>,
    pub delivery: Spread,
    pub delivery_after: Spread,
}

impl Figures {
    pub fn gather(
        riders: &[Rider],
        times: Times,
        victim: Victim<'_>,
        commands: &HashMap<u64, Command>,
    ) -> Self {
        let Times {
            began,
            fault_at,
            fault_ends,
        } = times;
        let Victim {
            index: victim,
            id: victim_id,
            room_owners,
        } = victim;
        let mut figures = Self {
            candidates: riders.len(),
            fault_at_s: fault_at.duration_since(began).as_secs_f64(),
            fault_ends_s: fault_ends.duration_since(began).as_secs_f64(),
            ..Self::default()
        };
        let mut all = Vec::new();
        let mut unlucky = Vec::new();
        let mut pauses = Vec::new();
        let mut ack_times = Vec::new();
        let mut sessions = Vec::new();
        let end = Instant::now();
        let mut slowest = Vec::new();
        for rider in riders {
            let record = rider.record.lock().unwrap_or_else(|p| p.into_inner());
            let on_socket = rider.first_node == victim;
            let in_room = room_owners
                .and_then(|owners| owners.get(rider.room - 1))
                .is_some_and(|owner| owner == victim_id);
            figures.on_victims_sockets += usize::from(on_socket);
            figures.in_victims_rooms += usize::from(in_room);
            figures.failed_attempts += record.failed_attempts;
            figures.reconnects += record.ended.len();
            figures.acks_total += record.acked.len();
            if let Some(reason) = &record.gave_up {
                figures
                    .gave_up
                    .push(format!("{}: {reason}", rider.candidate_id));
            }
            for (code, at) in &record.refused {
                if *at > fault_at {
                    *figures.refused_by_code.entry(code.clone()).or_default() += 1;
                }
            }
            ack_times.extend(record.acked.iter().map(|(_, _, at)| *at));
            for (index, welcomed) in record.welcomed.iter().enumerate() {
                let ended = record.ended.get(index).copied().unwrap_or(end);
                sessions.push((*welcomed, ended));
            }
            figures.clock_jump_max_s = figures.clock_jump_max_s.max(clock_jump(&record.clock));
            pauses.push(longest_pause(&record.acked, fault_at));
            if let Some(recovery) = recovery(&record.acked, fault_at) {
                slowest.push((
                    recovery,
                    format!(
                        "{} (socket on node-{}, room-{} owned by {}): {} ms, {} sockets ended, {} failed attempts",
                        rider.candidate_id,
                        rider.first_node + 1,
                        rider.room,
                        room_owners
                            .and_then(|owners| owners.get(rider.room - 1))
                            .map_or("?", String::as_str),
                        recovery.as_millis(),
                        record.ended.len(),
                        record.failed_attempts
                    ),
                ));
                figures.saving_again += 1;
                all.push(recovery);
                if on_socket || in_room {
                    unlucky.push(recovery);
                }
            }
        }
        let received: HashMap<u64, Instant> = riders
            .iter()
            .flat_map(|rider| {
                let record = rider.record.lock().unwrap_or_else(|p| p.into_inner());
                record
                    .controls
                    .iter()
                    .filter_map(|(_, reason, at)| Some((id_of(reason.as_deref()?)?, *at)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let (mut delivery, mut delivery_after) = (Vec::new(), Vec::new());
        for (id, command) in commands {
            let after = command.sent_at >= fault_at;
            let reached = received
                .get(id)
                .map(|at| at.saturating_duration_since(command.sent_at));
            if command.ack == Some(Ack::Delivered(true)) && reached.is_none() {
                figures.confirmed_not_reached.push(format!(
                    "warning {id}, sent {:.1} s into the drill",
                    command
                        .sent_at
                        .saturating_duration_since(began)
                        .as_secs_f64()
                ));
            }
            if after {
                figures.commands_after += 1;
                figures.delivered_after += usize::from(reached.is_some());
                delivery_after.extend(reached);
                match &command.ack {
                    Some(Ack::Delivered(true)) => figures.confirmed_after += 1,
                    Some(Ack::Delivered(false)) => figures.undeliverable_after += 1,
                    Some(Ack::Failed(code)) => {
                        *figures.refused_after.entry(code.clone()).or_default() += 1;
                    }
                    None => figures.unconfirmed_after += 1,
                }
            } else {
                figures.commands_before += 1;
                figures.delivered_before += usize::from(reached.is_some());
            }
            delivery.extend(reached);
        }
        figures.delivery = Spread::of(delivery);
        figures.delivery_after = Spread::of(delivery_after);
        slowest.sort_by_key(|(recovery, _)| std::cmp::Reverse(*recovery));
        figures.slowest = slowest.into_iter().take(10).map(|(_, what)| what).collect();
        figures.recoveries_ms = all.iter().map(|d| d.as_millis() as u64).collect();
        figures.recoveries_ms.sort_unstable();
        figures.recovery_all = Spread::of(all);
        figures.recovery_unlucky = Spread::of(unlucky);
        figures.longest_pause = Spread::of(pauses);
        let seconds = end.duration_since(began).as_secs() as usize + 1;
        figures.acks_per_second = vec![0; seconds];
        for at in ack_times {
            let bucket = at.duration_since(began).as_secs() as usize;
            if let Some(count) = figures.acks_per_second.get_mut(bucket) {
                *count += 1;
            }
        }
        figures.connected = (0..seconds)
            .map(|second| {
                let at = began + Duration::from_secs(second as u64);
                sessions
                    .iter()
                    .filter(|(from, to)| *from <= at && at < *to)
                    .count()
            })
            .collect();
        figures
    }
}

/// Fault → the first ack after the fault that follows a silence (the
/// outage's end), or the first ack at all when there was no silence. Acks
/// already on their way when the fault hit arrive just after it; they do
/// not end an outage. Only a silence that began by `SILENCE` after the
/// fault counts: a candidate saving on past that was not stopped by the
/// fault's blow, and a later pause (the next step of a rolling restart, a
/// room moving at the end of a drain) is the longest pause's to show.
fn recovery(acked: &[(i64, i64, Instant)], fault_at: Instant) -> Option<Duration> {
    let mut previous = acked
        .iter()
        .map(|(_, _, at)| *at)
        .filter(|at| *at <= fault_at)
        .max()
        .unwrap_or(fault_at);
    let mut first = None;
    for at in acked
        .iter()
        .map(|(_, _, at)| *at)
        .filter(|at| *at > fault_at)
    {
        first.get_or_insert(at);
        if previous > fault_at + SILENCE {
            break;
        }
        if at.duration_since(previous) > SILENCE {
            return Some(at.duration_since(fault_at));
        }
        previous = at;
    }
    first.map(|at| at.duration_since(fault_at))
}

/// The longest time between two acks, counted from the last ack before
/// the fault (or the fault) on.
fn longest_pause(acked: &[(i64, i64, Instant)], fault_at: Instant) -> Duration {
    let mut last = acked
        .iter()
        .map(|(_, _, at)| *at)
        .filter(|at| *at <= fault_at)
        .max()
        .unwrap_or(fault_at);
    let mut longest = Duration::ZERO;
    for at in acked
        .iter()
        .map(|(_, _, at)| *at)
        .filter(|at| *at > fault_at)
    {
        longest = longest.max(at.duration_since(last));
        last = at;
    }
    longest
}

/// The largest jump of a candidate's remaining time against the wall clock
/// between two observations (seconds; rounding makes 1 s normal).
fn clock_jump(clock: &[(Instant, i64)]) -> i64 {
    clock
        .windows(2)
        .map(|pair| {
            let ((t1, r1), (t2, r2)) = (pair[0], pair[1]);
            let wall = t2.duration_since(t1).as_secs_f64();
            let counted = (r1 - r2) as f64;
            (counted - wall).abs().round() as i64
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outage_ends_with_the_first_ack_after_a_silence() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // One ack in flight arrives 10 ms after the fault, then 2 s of
        // nothing, then saves again.
        let acked = vec![
            (1, 1, at(0)),
            (2, 1, at(110)),
            (3, 1, at(2_100)),
            (4, 1, at(2_200)),
        ];
        assert_eq!(
            recovery(&acked, at(100)),
            Some(Duration::from_millis(2_000))
        );
        // No silence at all: the first ack after the fault.
        let steady = vec![(1, 1, at(0)), (2, 1, at(200)), (3, 1, at(400))];
        assert_eq!(recovery(&steady, at(100)), Some(Duration::from_millis(100)));
        assert_eq!(recovery(&steady, at(500)), None);
        // Saving on after the fault, then a pause later (the next step of
        // a rolling restart): the fault did not stop this candidate.
        let later = vec![
            (1, 1, at(0)),
            (2, 1, at(300)),
            (3, 1, at(600)),
            (4, 1, at(900)),
            (5, 1, at(5_000)),
        ];
        assert_eq!(recovery(&later, at(100)), Some(Duration::from_millis(200)));
    }

    #[test]
    fn a_clock_that_jumps_is_seen() {
        let t0 = Instant::now();
        let steady = [(t0, 600), (t0 + Duration::from_secs(10), 590)];
        assert_eq!(clock_jump(&steady), 0);
        let jumped = [(t0, 600), (t0 + Duration::from_secs(10), 560)];
        assert_eq!(clock_jump(&jumped), 30);
    }

    /// Planted: the server confirms a warning as delivered and the
    /// candidate never gets it — the drill must fail on it; one never
    /// confirmed, or confirmed and received, must not.
    #[test]
    fn a_confirmed_warning_that_never_arrives_is_caught() {
        use std::sync::{Arc, Mutex};

        use crate::drill::traffic::Record;

        let began = Instant::now();
        let mut record = Record::default();
        record.controls.push((
            "warn".into(),
            Some(super::super::proctors::reason(2)),
            began,
        ));
        let riders = [Rider {
            candidate_id: "cand-0001".into(),
            room: 1,
            first_node: 0,
            record: Arc::new(Mutex::new(record)),
        }];
        let command = |ack| Command {
            sent_at: began,
            ack,
        };
        let commands = HashMap::from([
            (1, command(Some(Ack::Delivered(true)))),
            (2, command(Some(Ack::Delivered(true)))),
            (3, command(None)),
        ]);
        let figures = Figures::gather(
            &riders,
            Times {
                began,
                fault_at: began,
                fault_ends: began,
            },
            Victim {
                index: 0,
                id: "node-1",
                room_owners: None,
            },
            &commands,
        );
        assert_eq!(figures.confirmed_not_reached.len(), 1, "{figures:?}");
        assert!(figures.confirmed_not_reached[0].starts_with("warning 1,"));
        assert_eq!((figures.confirmed_after, figures.unconfirmed_after), (2, 1));
    }
}
