//! The verdict and the report: a one-line verdict per scenario, and with
//! `--report DIR` a `summary.json`, `report.md` and `report.html` with the
//! charts as SVG drawn here (acks/s with the fault marked, connected
//! candidates, the recovery-time distribution).

use std::fmt::Write as _;
use std::path::Path;

use super::checker::Findings;
use super::figures::Figures;
use super::{DrillOptions, Outcome, Scenario};

/// Judges a drill: any checker finding, a candidate that did not save
/// again, a clock that jumped, or a p99 longest pause between saves above
/// the budget fails it.
pub fn judge(
    scenario: Scenario,
    options: &DrillOptions,
    timeline: Vec<(f64, String)>,
    figures: Figures,
    findings: Findings,
    time_up: super::closing::TimeUp,
    fault_violations: Vec<String>,
) -> Outcome {
    let mut violations = fault_violations;
    violations.extend(
        time_up
            .violations
            .iter()
            .map(|what| format!("time-up: {what}")),
    );
    violations.extend(findings.lost.iter().map(|what| format!("lost: {what}")));
    violations.extend(
        findings
            .twice
            .iter()
            .map(|what| format!("written twice: {what}")),
    );
    violations.extend(
        findings
            .stale_epochs
            .iter()
            .map(|what| format!("stale epoch: {what}")),
    );
    if figures.saving_again < figures.candidates {
        violations.push(format!(
            "{} of {} candidates never saved again",
            figures.candidates - figures.saving_again,
            figures.candidates
        ));
    }
    violations.extend(
        figures
            .gave_up
            .iter()
            .map(|what| format!("gave up: {what}")),
    );
    // The budget is on what a candidate lives: the longest it went without
    // a save (for a fault in steps, a rolling restart, "fault → saving
    // again" counts from the first step).
    let budget_ms = options.budget.as_millis() as u64;
    if figures.longest_pause.p99_ms > budget_ms {
        violations.push(format!(
            "p99 of the longest pause between saves, {} ms, is above the budget of {budget_ms} ms",
            figures.longest_pause.p99_ms
        ));
    }
    violations.extend(
        figures
            .confirmed_not_reached
            .iter()
            .map(|what| format!("confirmed delivered, never reached its candidate: {what}")),
    );
    // Rounding of remaining_s and the time between frames: 2 s is normal.
    if figures.clock_jump_max_s > 2 {
        violations.push(format!(
            "a candidate's remaining time jumped by {} s",
            figures.clock_jump_max_s
        ));
    }
    let passed = violations.is_empty();
    let verdict = format!(
        "{} {}: {}/{} saving again, p99 {:.1} s (unlucky {:.1} s, longest pause p99 {:.1} s), {} acked answers lost of {} checked, {} written twice, {} stale epochs, time-up {}/{} on time",
        if passed { "PASS" } else { "FAIL" },
        scenario.name(),
        figures.saving_again,
        figures.candidates,
        figures.recovery_all.p99_ms as f64 / 1000.0,
        figures.recovery_unlucky.p99_ms as f64 / 1000.0,
        figures.longest_pause.p99_ms as f64 / 1000.0,
        findings.lost.len(),
        findings.acked_checked,
        findings.twice.len(),
        findings.stale_epochs.len(),
        time_up.on_time,
        time_up.candidates,
    );
    Outcome {
        scenario,
        passed,
        verdict,
        hypothesis: scenario.hypothesis(),
        timeline,
        nodes: options.cluster.nodes,
        candidates: options.candidates,
        figures,
        findings,
        time_up,
        violations,
    }
}

/// Writes `summary.json`, `report.md`, `report.html` and the charts for
/// `outcomes` into `dir`.
pub fn write(outcomes: &[Outcome], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(outcomes)?,
    )?;
    let mut markdown = String::from("# invigil chaos drill\n\n");
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>invigil chaos drill</title>\
         <style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}td,th{padding:.2rem .6rem;text-align:left}\
         .pass{color:#0a0}.fail{color:#c00}</style><h1>invigil chaos drill</h1>",
    );
    for outcome in outcomes {
        let name = outcome.scenario.name();
        let charts = [
            (format!("{name}-acks.svg"), acks_chart(&outcome.figures)),
            (
                format!("{name}-connected.svg"),
                connected_chart(&outcome.figures),
            ),
            (
                format!("{name}-recovery.svg"),
                recovery_chart(&outcome.figures),
            ),
        ];
        for (file, svg) in &charts {
            std::fs::write(dir.join(file), svg)?;
        }
        markdown.push_str(&section_markdown(outcome, &charts));
        let _ = write!(
            html,
            "<h2>{name}</h2><p class=\"{}\"><b>{}</b></p><p><i>{}</i></p><table>",
            if outcome.passed { "pass" } else { "fail" },
            escape(&outcome.verdict),
            escape(outcome.hypothesis)
        );
        for (at, what) in &outcome.timeline {
            let _ = write!(html, "<tr><td>{at:.1} s</td><td>{}</td></tr>", escape(what));
        }
        html.push_str("</table>");
        for violation in &outcome.violations {
            let _ = write!(html, "<p class=\"fail\">{}</p>", escape(violation));
        }
        for (_, svg) in &charts {
            html.push_str(svg);
        }
    }
    html.push_str("</html>\n");
    std::fs::write(dir.join("report.md"), markdown)?;
    std::fs::write(dir.join("report.html"), html)?;
    Ok(())
}

fn section_markdown(outcome: &Outcome, charts: &[(String, String)]) -> String {
    let figures = &outcome.figures;
    let mut text = format!(
        "## {}\n\n**{}**\n\n*Hypothesis:* {}\n\n{} nodes, {} candidates.\n\n### Timeline\n\n",
        outcome.scenario.name(),
        outcome.verdict,
        outcome.hypothesis,
        outcome.nodes,
        outcome.candidates
    );
    for (at, what) in &outcome.timeline {
        let _ = writeln!(text, "- {at:.1} s: {what}");
    }
    text.push_str("\n### Checker (the journal, read from Postgres)\n\n");
    let findings = &outcome.findings;
    let _ = writeln!(
        text,
        "- acknowledged answers checked: {}; journal rows: {}\n- lost: {}; written twice: {}; stale epochs: {}",
        findings.acked_checked,
        findings.journal_rows,
        findings.lost.len(),
        findings.twice.len(),
        findings.stale_epochs.len()
    );
    let time_up = &outcome.time_up;
    let _ = writeln!(
        text,
        "- time-up (the closing plan, {} candidates, {} in the victim's rooms, deadline {:.1} s after the fault): {} submitted at time-up within the budget, {} told, latest {} ms after the deadline",
        time_up.candidates,
        time_up.in_victims_rooms,
        time_up.deadline_after_fault_s,
        time_up.on_time,
        time_up.told,
        time_up.latest_ms
    );
    for violation in outcome.violations.iter().take(20) {
        let _ = writeln!(text, "- **violation:** {violation}");
    }
    let spread = |s: &super::figures::Spread| {
        format!(
            "{} / {} / {} ms (n = {})",
            s.p50_ms, s.p99_ms, s.max_ms, s.count
        )
    };
    let _ = write!(
        text,
        "\n### Figures\n\n| figure | value |\n|---|---|\n\
         | saving again | {}/{} |\n\
         | fault → saving again, p50 / p99 / max, every candidate | {} |\n\
         | the same, candidates on the victim's sockets ({}) or in its rooms ({}) | {} |\n\
         | longest pause between two acks, p50 / p99 / max | {} |\n\
         | acks | {} |\n| reconnects / failed attempts | {} / {} |\n\
         | proctor warnings delivered, before the fault / from it on | {}/{} / {}/{} |\n\
         | warnings from the fault on by their command_ack: delivered / no socket / refused / never confirmed | {} / {} / {} / {} |\n\
         | warning → control at the candidate, p50 / p99 / max: all / from the fault on | {} / {} |\n\
         | refusals after the fault | {} |\n| largest clock jump | {} s |\n\n",
        figures.saving_again,
        figures.candidates,
        spread(&figures.recovery_all),
        figures.on_victims_sockets,
        figures.in_victims_rooms,
        spread(&figures.recovery_unlucky),
        spread(&figures.longest_pause),
        figures.acks_total,
        figures.reconnects,
        figures.failed_attempts,
        figures.delivered_before,
        figures.commands_before,
        figures.delivered_after,
        figures.commands_after,
        figures.confirmed_after,
        figures.undeliverable_after,
        by_code(&figures.refused_after, "0"),
        figures.unconfirmed_after,
        spread(&figures.delivery),
        spread(&figures.delivery_after),
        by_code(&figures.refused_by_code, "none"),
        figures.clock_jump_max_s,
    );
    if !figures.slowest.is_empty() {
        text.push_str("The slowest to save again:\n\n");
        for who in &figures.slowest {
            let _ = writeln!(text, "- {who}");
        }
        text.push('\n');
    }
    for (file, _) in charts {
        let _ = writeln!(text, "![{file}]({file})\n");
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const PAD: f64 = 40.0;

/// A line chart of `values` (one a second) with the fault shaded.
fn line_chart(title: &str, values: &[usize], figures: &Figures) -> String {
    let max = values.iter().copied().max().unwrap_or(1).max(1) as f64;
    let count = values.len().max(2) as f64;
    let x = |i: f64| PAD + i / (count - 1.0) * (WIDTH - 2.0 * PAD);
    let y = |v: f64| HEIGHT - PAD - v / max * (HEIGHT - 2.0 * PAD);
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x(i as f64), y(*v as f64)))
        .collect();
    let (from, to) = (
        x(figures.fault_at_s),
        x(figures.fault_ends_s.max(figures.fault_at_s + 0.2)),
    );
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{PAD}\" y=\"16\" font-size=\"13\">{title}</text>\
         <rect x=\"{from:.1}\" y=\"{PAD}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f88\" opacity=\"0.35\"/>\
         <text x=\"{from:.1}\" y=\"{:.1}\" fill=\"#c00\">fault</text>\
         <line x1=\"{PAD}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
         <text x=\"4\" y=\"{:.1}\">{max:.0}</text><text x=\"4\" y=\"{:.1}\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\">{:.0} s</text>\
         <polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        (to - from).max(2.0),
        HEIGHT - 2.0 * PAD,
        PAD - 4.0,
        HEIGHT - PAD,
        WIDTH - PAD,
        HEIGHT - PAD,
        PAD + 4.0,
        HEIGHT - PAD,
        WIDTH - PAD - 30.0,
        HEIGHT - PAD + 14.0,
        count - 1.0,
        points.join(" ")
    )
}

fn acks_chart(figures: &Figures) -> String {
    line_chart(
        "acknowledged answers per second",
        &figures.acks_per_second,
        figures,
    )
}

fn connected_chart(figures: &Figures) -> String {
    line_chart("candidates connected", &figures.connected, figures)
}

/// The recovery times, sorted: candidate share (x) against time (y).
fn recovery_chart(figures: &Figures) -> String {
    let values = &figures.recoveries_ms;
    let max = values.last().copied().unwrap_or(1).max(1) as f64;
    let count = values.len().max(2) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            format!(
                "{:.1},{:.1}",
                PAD + i as f64 / (count - 1.0) * (WIDTH - 2.0 * PAD),
                HEIGHT - PAD - *ms as f64 / max * (HEIGHT - 2.0 * PAD)
            )
        })
        .collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{PAD}\" y=\"16\" font-size=\"13\">fault → saving again, every candidate (sorted)</text>\
         <text x=\"4\" y=\"{PAD}\">{max:.0} ms</text><text x=\"4\" y=\"{:.1}\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\">100 %</text>\
         <polyline fill=\"none\" stroke=\"#c60\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        HEIGHT - PAD,
        WIDTH - PAD - 20.0,
        HEIGHT - PAD + 14.0,
        points.join(" ")
    )
}

/// Counts by error code, `code n, …` (`empty` when there are none).
fn by_code(counts: &std::collections::BTreeMap<String, usize>, empty: &str) -> String {
    if counts.is_empty() {
        return empty.to_string();
    }
    counts
        .iter()
        .map(|(code, count)| format!("{code} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
