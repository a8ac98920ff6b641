//! A fresh key space in the test Redis for each test: a unique key prefix,
//! deleted when the test ends (also when it fails).

use std::time::Duration;

use invigil_store::{RedisConnection, RedisHotState, RedisOptions, RedisWorkQueue};

/// The Redis the tests use; scripts/ensure-services.sh provides it.
pub fn redis_url() -> String {
    std::env::var("INVIGIL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A unique prefix in the test Redis; its keys are deleted on drop.
pub struct TestRedis {
    pub options: RedisOptions,
    pub connection: RedisConnection,
}

impl TestRedis {
    /// Panics with a hint when the test Redis is not reachable.
    pub async fn new() -> Self {
        Self::at(redis_url()).await
    }

    /// On a database of its own (the test Redis' url must name none), so a
    /// test can tell its connections from every other test's.
    pub async fn on_database(database: u8) -> Self {
        Self::at(format!("{}/{database}", redis_url().trim_end_matches('/'))).await
    }

    async fn at(url: String) -> Self {
        let mut options = RedisOptions::new(url.clone());
        options.key_prefix = format!("invigil-test:{}:", uuid::Uuid::now_v7().simple());
        // Generous: a loaded CI machine must not fail a test by slowness.
        options.op_timeout = Duration::from_secs(2);
        let connection = RedisConnection::new(options.clone())
            .unwrap_or_else(|error| panic!("INVIGIL_TEST_REDIS_URL is not usable: {error}"));
        if let Err(error) = connection.ping().await {
            panic!("Redis at {url} is not reachable ({error}); run scripts/ensure-services.sh");
        }
        Self {
            options,
            connection,
        }
    }

    pub fn hot_state(&self) -> RedisHotState {
        RedisHotState::new(self.connection.clone())
    }

    pub fn work_queue(&self) -> RedisWorkQueue {
        RedisWorkQueue::new(self.connection.clone())
    }

    /// A plain client, to do to Redis what the adapters never do.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.options.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection")
    }

    /// Every key under this test's prefix.
    pub fn keys(&self) -> Vec<String> {
        scan_prefix(&self.options).expect("scan the test keys")
    }
}

/// The keys under the options' prefix, through a plain connection.
fn scan_prefix(options: &RedisOptions) -> redis::RedisResult<Vec<String>> {
    let client = redis::Client::open(options.url.as_str())?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut scan = redis::cmd("SCAN");
    scan.cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{}*", options.key_prefix))
        .arg("COUNT")
        .arg(1000);
    scan.iter::<String>(&mut connection)?.collect()
}

impl Drop for TestRedis {
    /// Deletes the test's keys; best effort, also while a failed test unwinds.
    fn drop(&mut self) {
        let Ok(keys) = scan_prefix(&self.options) else {
            return;
        };
        if keys.is_empty() {
            return;
        }
        let deleted = redis::Client::open(self.options.url.as_str()).and_then(|client| {
            let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
            redis::cmd("DEL").arg(&keys).query::<u64>(&mut connection)
        });
        if let Err(error) = deleted {
            eprintln!("could not delete the test keys {keys:?}: {error}");
        }
    }
}
