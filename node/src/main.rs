//! `invigil`: parse the command line, load config, run.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use invigil_actors::domain::PlanId;
use invigil_node::demo::{self, DemoOptions};
use invigil_node::{Application, Config, shutdown_signal, telemetry};

/// Many small, short-lived allocations on many threads (frames, messages,
/// ids): mimalloc measured markedly cheaper than the system allocator here
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "invigil",
    version,
    about = "The real-time backend of live computer-based exams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file (and INVIGIL_<SECTION>__<KEY> overrides).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print it with secrets redacted.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// One node on embedded SQLite with a seeded demo exam; no services needed.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "invigil-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "invigil-demo-admin-key")]
        api_key: String,
        /// Delete the data directory first.
        #[arg(long)]
        reset: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            let _telemetry = telemetry::init(&config.telemetry, &config.node.id)?;
            Application::build(config)
                .await?
                .run_until_stopped(shutdown_signal())
                .await
        }
        Command::Migrate { config } => {
            let config = Config::load(config.as_deref())?;
            let _telemetry = telemetry::init(&config.telemetry, &config.node.id)?;
            let store = invigil_store::SqlStore::connect(&invigil_store::SqlOptions::new(
                config.store.url.expose(),
            ))
            .await?;
            store.migrate().await.context("migrating")?;
            let url = invigil_store::redact_url(config.store.url.expose());
            let _ = writeln!(std::io::stdout(), "migrations applied to {url}");
            Ok(())
        }
        Command::CheckConfig { config } => {
            let config = Config::load(config.as_deref())?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{config:#?}");
            Ok(())
        }
        Command::Demo {
            listen,
            data_dir,
            api_key,
            reset,
        } => {
            let options = DemoOptions {
                listen,
                data_dir,
                api_key,
                reset,
            };
            let config = demo::config(&options)?;
            let _telemetry = telemetry::init(&config.telemetry, &config.node.id)?;
            let application = Application::build(config).await?;
            let seeded = demo::seed(application.state()).await?;
            let plan_state = application
                .state()
                .plans
                .plan_digest(&PlanId::parse(demo::DEMO_PLAN_ID)?)
                .await?
                .map_or("missing", |(_, state)| state.as_str());
            // A closed stdout must not take the node down.
            let banner = demo::banner(application.local_addr(), &options, seeded, plan_state);
            let _ = writeln!(std::io::stdout(), "{banner}");
            let _ = std::io::stdout().flush();
            application.run_until_stopped(shutdown_signal()).await
        }
    }
}
