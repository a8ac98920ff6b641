//! Runs the README's "Try it" examples, verbatim, against a real
//! `invigil demo` process, and checks each documented answer.
//!
//! Each `sh` block is run with bash (the demo address substituted); the
//! `json` block after it is the documented answer: every key it shows must
//! be in the real answer with that value (`"…"` matches anything; arrays
//! match element by element).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DOCUMENTED_BASE: &str = "http://127.0.0.1:8080";

struct Demo {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

fn start_demo() -> Demo {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_invigil"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the invigil binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (found, address) = std::sync::mpsc::channel();
    // Keep draining stdout for the whole run instead of closing the pipe
    // once the address is known.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("OpenAPI")
                && let Some(url) = rest.split_whitespace().next()
            {
                let _ = found.send(url.trim_end_matches("/openapi.json").to_string());
            }
        }
    });
    let base = address
        .recv_timeout(Duration::from_secs(60))
        .expect("the demo prints its address");
    Demo {
        child,
        base,
        _data: data,
    }
}

/// The (sh, json) block pairs of the "Try it" section, in order.
fn examples(readme: &str) -> Vec<(String, String)> {
    let section = readme.split("## Try it").nth(1).expect("a Try it section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in section.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => blocks.push(current.take().expect("open block")),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    let mut pairs = Vec::new();
    let mut blocks = blocks.into_iter();
    while let Some((info, command)) = blocks.next() {
        assert_eq!(info, "sh", "a Try it example starts with an sh block");
        let (info, answer) = blocks.next().expect("every example shows its answer");
        assert_eq!(info, "json", "the answer follows its example");
        pairs.push((command, answer));
    }
    pairs
}

fn matches(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(any), _) if any == "…" => Ok(()),
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let found = actual
                    .get(key)
                    .ok_or_else(|| format!("{path}.{key} is missing"))?;
                matches(value, found, &format!("{path}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            expected
                .iter()
                .zip(actual)
                .enumerate()
                .try_for_each(|(index, (e, a))| matches(e, a, &format!("{path}[{index}]")))
        }
        (expected, actual) if expected == actual => Ok(()),
        (expected, actual) => Err(format!("{path}: documented {expected}, got {actual}")),
    }
}

#[test]
fn the_readme_examples_answer_what_the_readme_says() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let examples = examples(&readme);
    assert!(
        examples.len() >= 8,
        "found only {} examples",
        examples.len()
    );
    let demo = start_demo();
    for (index, (command, documented)) in examples.iter().enumerate() {
        let script = command.replace(DOCUMENTED_BASE, &demo.base);
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "example {index} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let actual: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|error| panic!("example {index} printed no JSON ({error}): {stdout}"));
        let expected: Value = serde_json::from_str(documented)
            .unwrap_or_else(|error| panic!("the README's answer {index} is not JSON ({error})"));
        if let Err(difference) = matches(&expected, &actual, "") {
            panic!("README example {index} differs: {difference}\n$ {command}\n{actual:#}");
        }
    }
}
