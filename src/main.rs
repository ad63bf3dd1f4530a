//! `dlog`: parse the command line and configuration, start one node, stop on SIGTERM/SIGINT.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use dlog::broker::Broker;
use dlog::config::{BrokerConfig, Properties};

/// A Kafka-compatible commit log. Properties use Kafka's names (server.properties).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to listen on (sets `listeners=PLAINTEXT://ADDRESS`).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (sets `log.dirs`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A Kafka-style server.properties file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override any property, e.g. `--set log.segment.bytes=1048576` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

fn properties(cli: &Cli) -> Result<Properties> {
    let mut properties = Properties::default();
    if let Some(path) = &cli.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (key, value) in
            Properties::parse_text(&text).with_context(|| format!("parsing {}", path.display()))?
        {
            properties
                .set(&key, &value)
                .with_context(|| format!("in {}", path.display()))?;
        }
    }
    for pair in &cli.overrides {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair}: expected KEY=VALUE"))?;
        properties.set(key.trim(), value)?;
    }
    if let Some(listen) = &cli.listen {
        properties.set("listeners", &format!("PLAINTEXT://{listen}"))?;
    }
    if let Some(dir) = &cli.data_dir {
        properties.set("log.dirs", &dir.to_string_lossy())?;
    }
    Ok(properties)
}

/// Each partition holds a few open files; raise the soft descriptor limit to the hard one.
fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = BrokerConfig::from_properties(properties(&cli)?)?;
    raise_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config, cli.metrics_listen))
}

async fn run(config: BrokerConfig, metrics_listen: Option<std::net::SocketAddr>) -> Result<()> {
    if let Some(address) = metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .context("starting the metrics listener")?;
    }
    let listen_address = config.listen_address;
    let broker = Broker::open(config)?;
    let listener = tokio::net::TcpListener::bind(listen_address)
        .await
        .with_context(|| format!("binding {listen_address}"))?;
    tracing::info!(address = %listen_address, cluster_id = broker.cluster_id, "dlog listening");
    let maintenance = tokio::spawn(broker.clone().run_maintenance());
    let group_timers = tokio::spawn(dlog::coordinator::run_timers(broker.clone()));
    let server = tokio::spawn(dlog::server::run(broker.clone(), listener));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    let _ = broker.shutdown.send(true);
    let _ = server.await;
    let _ = maintenance.await;
    let _ = group_timers.await;
    // Let in-flight handlers finish their appends before closing the logs.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    broker.close().context("closing logs")?;
    tracing::info!("clean shutdown complete");
    Ok(())
}
