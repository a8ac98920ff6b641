//! Drilling a fleet the drill did not start: `--target URL[,URL…]` names
//! every node's base URL, and `--control FILE` a small TOML file with the
//! shell commands that inject the faults (docs/chaos.md, "Drilling an
//! existing fleet"). Like `invigil-load`, the targets must be loopback
//! addresses: a remote fleet is reached through tunnels or port-forwards
//! (`ssh -L`, `kubectl port-forward`) from the machine that drills it.
//!
//! In a command, `{node}` is the node's id (as `GET /api/v1/cluster` gives
//! it), `{url}` its base URL, `{host}` and `{port}` the URL's parts. A
//! command that exits non-zero (or runs longer than 60 s) fails the drill.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// The control file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlFile {
    /// The fleet's admin key (`X-Api-Key`); else `INVIGIL_DRILL_API_KEY`.
    pub api_key: Option<String>,
    /// The Postgres the nodes write to; the checker reads the journal and
    /// the leases there (a read-only role is enough).
    pub store_url: String,
    /// SIGKILL of one node's process.
    pub kill: Option<String>,
    /// SIGSTOP and SIGCONT of one node's process.
    pub stop: Option<String>,
    pub cont: Option<String>,
    /// Starts one node (after a kill or a drain).
    pub start: Option<String>,
    /// Cuts one node off from the others and the stores (its HTTP port
    /// still answering), and heals that.
    pub cut: Option<String>,
    pub heal: Option<String>,
    /// Restarts Redis (`redis-restart`).
    pub redis_restart: Option<String>,
    /// Crashes and restarts Postgres (`postgres-restart`).
    pub postgres_restart: Option<String>,
    /// Stops and resumes every Postgres process (`postgres-stall`).
    pub postgres_stop: Option<String>,
    pub postgres_cont: Option<String>,
}

/// One node of the fleet.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub url: String,
}

impl ControlFile {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the control file {}", path.display()))?;
        let mut control: Self = toml::from_str(&text)
            .with_context(|| format!("the control file {}", path.display()))?;
        if control.api_key.is_none() {
            control.api_key = std::env::var("INVIGIL_DRILL_API_KEY").ok();
        }
        anyhow::ensure!(
            control
                .api_key
                .as_deref()
                .is_some_and(|key| !key.is_empty()),
            "the control file has no api_key, and INVIGIL_DRILL_API_KEY is not set"
        );
        Ok(control)
    }

    /// Whether command `name` is there (and not empty).
    pub fn has(&self, name: &str) -> bool {
        let command = match name {
            "kill" => &self.kill,
            "stop" => &self.stop,
            "cont" => &self.cont,
            "start" => &self.start,
            "cut" => &self.cut,
            "heal" => &self.heal,
            "redis_restart" => &self.redis_restart,
            "postgres_restart" => &self.postgres_restart,
            "postgres_stop" => &self.postgres_stop,
            "postgres_cont" => &self.postgres_cont,
            _ => &None,
        };
        command
            .as_deref()
            .is_some_and(|command| !command.is_empty())
    }

    /// Runs command `name` (its template `command`), for `node` if given.
    pub fn run(
        &self,
        name: &str,
        command: Option<&String>,
        node: Option<&Node>,
    ) -> anyhow::Result<()> {
        let template = command.with_context(|| format!("no `{name}` in the control file"))?;
        let line = match node {
            Some(node) => expand(template, node)?,
            None => template.clone(),
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("{name}: {line}"))?;
        for _ in 0..600 {
            if let Some(status) = child.try_wait()? {
                anyhow::ensure!(status.success(), "{name} ({line}) exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        anyhow::bail!("{name} ({line}) ran longer than 60 s")
    }
}

/// The template with the node's fields filled in.
fn expand(template: &str, node: &Node) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(&node.url)?;
    Ok(template
        .replace("{node}", &node.id)
        .replace("{url}", &node.url)
        .replace("{host}", url.host_str().unwrap_or_default())
        .replace(
            "{port}",
            &url.port_or_known_default().unwrap_or(80).to_string(),
        ))
}

/// Each target's node id, from its own `GET /api/v1/cluster`; every member
/// it lists must be among the targets.
pub async fn discover(
    client: &reqwest::Client,
    targets: &[String],
    api_key: &str,
) -> anyhow::Result<Vec<Node>> {
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    for target in targets {
        let url = crate::target::loopback_base(target)?;
        let view: serde_json::Value = client
            .get(format!("{url}/api/v1/cluster"))
            .header("X-Api-Key", api_key)
            .send()
            .await
            .with_context(|| format!("{url} does not answer"))?
            .error_for_status()
            .with_context(|| format!("GET {url}/api/v1/cluster"))?
            .json()
            .await?;
        let id = view["node_id"]
            .as_str()
            .with_context(|| format!("{url}: no node_id in /api/v1/cluster"))?
            .to_string();
        for member in view["members"].as_array().into_iter().flatten() {
            if let Some(member) = member["node_id"].as_str() {
                members.push(member.to_string());
            }
        }
        nodes.push(Node { id, url });
    }
    for member in members {
        anyhow::ensure!(
            nodes.iter().any(|node| node.id == member),
            "{member} is a member of the fleet but none of --target is it: name every node"
        );
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_gets_the_nodes_fields() {
        let node = Node {
            id: "node-2".into(),
            url: "http://127.0.0.1:18082".into(),
        };
        let line = expand(
            "ssh {host} kill -9 $(cat /run/{node}.pid) # {port} {url}",
            &node,
        )
        .expect("expands");
        assert_eq!(
            line,
            "ssh 127.0.0.1 kill -9 $(cat /run/node-2.pid) # 18082 http://127.0.0.1:18082"
        );
    }

    #[test]
    fn commands_are_known_by_name_and_unknown_keys_refused() {
        let control: ControlFile = toml::from_str(
            "api_key = \"k\"\nstore_url = \"postgres://x\"\nkill = \"kill -9 1\"\nstop = \"\"\n",
        )
        .expect("parses");
        assert!(control.has("kill"));
        assert!(!control.has("stop"), "an empty command is none");
        assert!(!control.has("cont"));
        assert!(
            toml::from_str::<ControlFile>("store_url = \"x\"\nkil = \"typo\"\n").is_err(),
            "unknown keys are refused"
        );
    }
}
