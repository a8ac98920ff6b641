//! What the nodes say about the cluster: each node's view and readiness,
//! and whether they all agree on members and owners (the drill waits for
//! that before the fault and after a node returns).

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::cluster::Cluster;

impl Cluster {
    /// Node `index`'s readiness check of the cluster (`/readyz`): its
    /// detail, `None` when it does not answer.
    pub async fn readiness(&self, index: usize) -> Option<String> {
        let response = self
            .client
            .get(format!("{}/readyz", self.base(index)))
            .timeout(Duration::from_secs(4))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body["checks"]
            .as_array()?
            .iter()
            .find(|check| check["name"] == "cluster")
            .and_then(|check| check["detail"].as_str())
            .map(str::to_string)
    }

    /// Node `index`'s view of the cluster.
    pub async fn view(&self, index: usize) -> Option<Value> {
        let response = self
            .client
            .get(format!("{}/api/v1/cluster", self.base(index)))
            .header("X-Api-Key", self.api_key())
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Every running node sees the running nodes ready and the same owner
    /// holding every shard.
    pub async fn agreed(&self) -> bool {
        let mut running: Vec<String> = self
            .running()
            .into_iter()
            .map(|index| self.node_id(index))
            .collect();
        running.sort();
        let mut owners: Option<Vec<Value>> = None;
        for index in self.running() {
            let Some(view) = self.view(index).await else {
                return false;
            };
            let mut ready: Vec<String> = view["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|member| member["status"] == "ready")
                .filter_map(|member| member["node_id"].as_str().map(str::to_string))
                .collect();
            ready.sort();
            if ready != running {
                return false;
            }
            let Some(shards) = view["shards"].as_array() else {
                return false;
            };
            if shards
                .iter()
                .any(|shard| shard["held_by"] != shard["owner"])
            {
                return false;
            }
            let these: Vec<Value> = shards.iter().map(|shard| shard["owner"].clone()).collect();
            match &owners {
                None => owners = Some(these),
                Some(first) if *first != these => return false,
                Some(_) => {}
            }
        }
        true
    }

    /// Waits until [`Self::agreed`], and the membership is stable (the
    /// majority rule counts against it), or fails after `timeout`.
    pub async fn wait_agreed(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.agreed().await {
                let running = self.running().len();
                let mut stable = true;
                for index in self.running() {
                    let view = self.view(index).await;
                    stable &= view.is_some_and(|view| {
                        view["stable_members"].as_u64() == Some(running as u64)
                    });
                }
                if stable {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the nodes did not agree within {timeout:?} (logs in {})",
                self.log_dir().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The owner of every shard as node `index` sees it.
    pub async fn owners(&self, index: usize) -> anyhow::Result<Vec<String>> {
        let view = self.view(index).await.context("no cluster view")?;
        Ok(view["shards"]
            .as_array()
            .context("no shards")?
            .iter()
            .map(|shard| shard["owner"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// The owner of each room (`room-1` first), as node 0 sees it.
    pub async fn owners_of_rooms(&self, plan_id: &str, rooms: usize) -> Option<Vec<String>> {
        let index = *self.running().first()?;
        let owners = self.owners(index).await.ok()?;
        let plan = invigil_actors::domain::PlanId::parse(plan_id).ok()?;
        (1..=rooms)
            .map(|room| {
                let room = invigil_actors::domain::RoomId::parse(format!("room-{room}")).ok()?;
                let shard = invigil_actors::shard::ShardId::of_room(&plan, &room);
                owners.get(usize::from(shard.get())).cloned()
            })
            .collect()
    }
}
