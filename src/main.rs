//! `dlog`: parse the command line and configuration, start one node, stop on SIGTERM/SIGINT.

use std::path::PathBuf;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use dlog::security::listener::ListenerSecurity;

use dlog::config::{BrokerConfig, Properties};
use dlog::metrics::http::{NodeStatus, Stage};
use dlog::node::Node;

/// A Kafka-compatible commit log. Properties use Kafka's names (server.properties).
/// With no subcommand, `dlog` runs one node; `dlog rebalance` is a client of a running cluster.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address of the PLAINTEXT listener (replaces the `PLAINTEXT://` entry of `listeners`,
    /// keeping the others, e.g. a SASL_SSL listener set in the config).
    #[arg(long)]
    listen: Option<String>,
    /// This node's id (sets `node.id`).
    #[arg(long)]
    node_id: Option<i32>,
    /// Address of the controller listener (adds `CONTROLLER://ADDRESS` to `listeners`).
    #[arg(long)]
    controller_listen: Option<String>,
    /// The controller quorum, `ID@HOST:PORT,...` (sets `controller.quorum.voters`).
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// Roles of this node: `broker`, `controller` or `broker,controller` (sets `process.roles`).
    #[arg(long)]
    process_roles: Option<String>,
    /// Data directory (sets `log.dirs`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A Kafka-style server.properties file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override any property, e.g. `--set log.segment.bytes=1048576` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Serve /metrics (Prometheus), /health and /ready on ADDRESS (sets `metrics.listen`;
    /// default: off).
    #[arg(long)]
    metrics_listen: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Plan a reassignment that evens out replicas, preferred leaders and disk bytes per broker
    /// (within racks), print it as kafka-reassign-partitions JSON, and execute (with
    /// throttles) or verify it. Without --execute or --verify it only plans.
    Rebalance(RebalanceArgs),
}

#[derive(clap::Args, Debug)]
struct RebalanceArgs {
    /// A broker of the cluster, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: String,
    /// Topics to balance, comma-separated (default: every topic but the internal ones).
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Start the reassignment (the computed plan, or --plan FILE).
    #[arg(long, conflicts_with = "verify")]
    execute: bool,
    /// With --execute: replication throttle in bytes per second on the brokers of the moves,
    /// set as kafka-reassign-partitions --throttle sets it; --verify removes it when done.
    #[arg(long, value_name = "BYTES_PER_S", requires = "execute")]
    throttle: Option<u64>,
    /// Report the progress of the reassignment of --plan FILE; once complete, remove the
    /// throttles. Exits 3 while partitions are still moving.
    #[arg(long, requires = "plan")]
    verify: bool,
    /// With --verify: once complete, elect the preferred (first) replicas as leaders.
    #[arg(long, requires = "verify")]
    elect_leaders: bool,
    /// A plan (kafka-reassign-partitions JSON) to execute or verify instead of computing one.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Write the proposed plan (kafka-reassign-partitions JSON) to FILE.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `dlog rebalance`: a protocol client on a small runtime of its own; no broker logging.
fn rebalance(args: RebalanceArgs) -> Result<std::process::ExitCode> {
    let options = dlog::rebalance::Options {
        bootstrap_server: args.bootstrap_server,
        topics: args.topics,
        execute: args.execute,
        verify: args.verify,
        throttle_bytes_per_s: args.throttle,
        output: args.output,
        plan: args.plan,
        elect_leaders: args.elect_leaders,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(dlog::rebalance::run(options)) {
        Ok(code) => Ok(std::process::ExitCode::from(code)),
        // One line with its causes: an operator's tool, not a crash report.
        Err(error) => {
            eprintln!("Error: {error:#}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
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
        let plaintext = format!("PLAINTEXT://{listen}");
        let listeners = if properties.is_explicit("listeners") {
            let mut listeners: Vec<String> = properties
                .get(dlog::config::LISTENERS)
                .split(',')
                .map(str::trim)
                .filter(|entry| {
                    !entry.is_empty()
                        && entry.contains("://")
                        && !entry.to_ascii_uppercase().starts_with("PLAINTEXT://")
                })
                .map(str::to_string)
                .collect();
            listeners.insert(0, plaintext);
            listeners.join(",")
        } else {
            plaintext
        };
        properties.set("listeners", &listeners)?;
    }
    if let Some(address) = &cli.controller_listen {
        let name = properties
            .get(dlog::config::CONTROLLER_LISTENER_NAMES)
            .split(',')
            .next()
            .unwrap_or("CONTROLLER")
            .trim()
            .to_string();
        // Replace an existing controller entry; keep the others.
        let mut listeners: Vec<String> = properties
            .get(dlog::config::LISTENERS)
            .split(',')
            .map(str::trim)
            .filter(|l| {
                !l.is_empty()
                    && !l
                        .to_ascii_uppercase()
                        .starts_with(&format!("{}://", name.to_ascii_uppercase()))
            })
            .map(str::to_string)
            .collect();
        listeners.push(format!("{name}://{address}"));
        properties.set("listeners", &listeners.join(","))?;
    }
    if let Some(id) = cli.node_id {
        properties.set("node.id", &id.to_string())?;
    }
    if let Some(voters) = &cli.controller_quorum_voters {
        properties.set("controller.quorum.voters", voters)?;
    }
    if let Some(roles) = &cli.process_roles {
        properties.set("process.roles", roles)?;
    }
    if let Some(dir) = &cli.data_dir {
        properties.set("log.dirs", &dir.to_string_lossy())?;
    }
    if let Some(address) = &cli.metrics_listen {
        properties.set("metrics.listen", address)?;
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

fn main() -> Result<std::process::ExitCode> {
    let mut cli = Cli::parse();
    if let Some(Command::Rebalance(args)) = cli.command.take() {
        return rebalance(args);
    }
    let properties =
        tracing::subscriber::with_default(dlog::logging::startup_logger(), || properties(&cli))?;
    dlog::logging::init(&properties)?;
    let config = BrokerConfig::from_properties(properties)?;
    raise_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `metrics.listen`: empty = off, else an address to bind (`host:port`).
fn metrics_address(config: &BrokerConfig) -> Result<Option<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    match config.properties.get(dlog::config::METRICS_LISTEN).trim() {
        "" => Ok(None),
        address => Ok(address
            .to_socket_addrs()
            .with_context(|| format!("metrics.listen: cannot resolve '{address}'"))?
            .next()),
    }
}

/// The security of every listener in `listeners`.
/// SCRAM listeners read `credentials`, the replicated metadata image once the node is open.
fn listener_securities(
    config: &BrokerConfig,
    credentials: Arc<dlog::security::DeferredCredentials>,
) -> Result<Vec<Arc<ListenerSecurity>>> {
    let credentials: Arc<dyn dlog::security::CredentialStore> = credentials;
    config
        .listeners
        .iter()
        .map(|listener| {
            ListenerSecurity::new(&config.properties, listener, credentials.clone()).map(Arc::new)
        })
        .collect()
}

/// How long a starting broker waits to be unfenced (caught up) before it serves clients anyway.
const STARTUP_CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

async fn run(config: BrokerConfig) -> Result<()> {
    // Health endpoints come up first, so that /ready can say 503 while the logs recover.
    let status = std::sync::Arc::new(NodeStatus::default());
    if let Some(address) = metrics_address(&config)? {
        let prometheus = dlog::metrics::install().context("installing metrics")?;
        dlog::metrics::http::start(address, prometheus, status.clone()).await?;
    }
    // Every listener's security is built before anything opens: a setting dlog cannot
    // honour stops the start here, naming it (fail closed).
    let credentials = Arc::new(dlog::security::DeferredCredentials::default());
    let listeners = listener_securities(&config, credentials.clone())?;
    let serves_clients = config.roles.broker;
    let opening = std::time::Instant::now();
    let broker = tokio::task::spawn_blocking(move || Node::open(config)).await??;
    credentials.set(broker.clone());
    dlog::metrics::storage::recovered(opening.elapsed(), broker.replicas.logs().clean_start());
    status.set_broker(broker.clone());
    status.set_stage(Stage::Binding);
    // The controller listener first: peers need it to elect a leader.
    let controller_server = match listeners.iter().find(|l| l.listener.controller) {
        Some(security) => {
            let address = security.listener.bind_address;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding controller listener {address}"))?;
            tracing::info!(%address, "controller listener up");
            Some(tokio::spawn(dlog::server::run_listener(
                broker.clone(),
                listener,
                dlog::server::ListenerKind::Controller,
                security.clone(),
            )))
        }
        None => None,
    };
    // Kafka's STARTING → RECOVERY → RUNNING: a broker of a cluster registers, catches up with
    // the metadata log as of its registration, is unfenced, and only then serves clients, so
    // that no client sees a stale view (topics missing, leaders elsewhere) right after a
    // restart. A single node registered and was unfenced while opening.
    let lifecycle = tokio::spawn(broker.clone().run_lifecycle());
    let replication = tokio::spawn(broker.clone().run_replication());
    if serves_clients && !broker.lifecycle.is_running() {
        tracing::info!("waiting to catch up with the metadata quorum before serving clients");
        if !broker.lifecycle.wait_running(STARTUP_CATCH_UP_WAIT).await {
            tracing::warn!(
                wait = ?STARTUP_CATCH_UP_WAIT,
                "not unfenced by the controller in time; serving clients anyway"
            );
        }
    }
    let mut servers = Vec::new();
    if serves_clients {
        for security in listeners.iter().filter(|l| !l.listener.controller) {
            let address = security.listener.bind_address;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| {
                    format!("binding listener {} {address}", security.listener.name)
                })?;
            tracing::info!(
                listener = security.listener.name,
                protocol = security.listener.protocol.name(),
                %address,
                cluster_id = broker.cluster_id,
                "dlog listening"
            );
            servers.push(tokio::spawn(dlog::server::run_listener(
                broker.clone(),
                listener,
                dlog::server::ListenerKind::Broker,
                security.clone(),
            )));
        }
    }
    status.set_stage(Stage::Ready);
    let maintenance = tokio::spawn(broker.clone().run_maintenance());
    let group_timers = tokio::spawn(dlog::coordinator::run_timers(
        broker.clone(),
        broker.shutdown.subscribe(),
    ));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    status.set_stage(Stage::ShuttingDown);
    // Leadership moves to other brokers while this one still answers (and still votes).
    broker.controlled_shutdown().await;
    // A leading controller resigns (EndQuorumEpoch) first, so a peer takes over at once.
    let resigning = broker.clone();
    let _ = tokio::task::spawn_blocking(move || resigning.controller.quorum().shutdown()).await;
    let _ = broker.shutdown.send(true);
    for server in servers.into_iter().chain(controller_server) {
        let _ = server.await;
    }
    let _ = maintenance.await;
    let _ = group_timers.await;
    let _ = lifecycle.await;
    let _ = replication.await;
    // The listeners returned after their connections answered what was in flight: no handler
    // appends any more when the logs close.
    broker.close().context("closing logs")?;
    tracing::info!("clean shutdown complete");
    Ok(())
}
