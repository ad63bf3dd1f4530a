//! `dlog rebalance`: a balancer shipped in the binary (Kafka needs Cruise Control for this).
//! It is a client of the Kafka protocol like Kafka's own tools: it reads the cluster
//! (Metadata, DescribeLogDirs), plans a reassignment that evens out replicas, leaders and disk
//! bytes per broker within racks ([`planner`], a pure function), prints it as
//! `kafka-reassign-partitions` JSON, and executes it with throttles and verifies it
//! (IncrementalAlterConfigs, AlterPartitionReassignments, ListPartitionReassignments,
//! ElectLeaders) as `kafka-reassign-partitions --execute --throttle` / `--verify` do ([`client`]).

pub mod client;
pub mod json;
pub mod planner;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use client::{Admin, Cluster};
use json::Reassignment;
use planner::{ClusterState, Load, Plan};

/// What `dlog rebalance` was asked to do (its command-line flags, see `src/main.rs`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub bootstrap_server: String,
    /// Topics to balance; empty: every topic but the internal ones.
    pub topics: Vec<String>,
    pub execute: bool,
    pub verify: bool,
    pub throttle_bytes_per_s: Option<u64>,
    /// Where to write the proposed plan (JSON).
    pub output: Option<PathBuf>,
    /// A plan to execute or verify instead of computing one.
    pub plan: Option<PathBuf>,
    /// With --verify: once complete, a preferred leader election of the plan's partitions.
    pub elect_leaders: bool,
}

/// How `dlog rebalance` ends: 0 done (or planned), 1 an error (anyhow), this when `--verify`
/// finds reassignments still in progress (so a script can wait with `until dlog rebalance
/// --verify ...; do sleep 5; done`).
pub const EXIT_IN_PROGRESS: u8 = 3;

fn read_plan(path: &PathBuf) -> Result<Reassignment> {
    let size_bytes = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    anyhow::ensure!(
        size_bytes <= json::PLAN_SIZE_BYTES_MAX,
        "{} is larger than {} bytes",
        path.display(),
        json::PLAN_SIZE_BYTES_MAX
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Reassignment::parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The per-broker table: replicas, preferred leaders and disk bytes, before and after.
fn balance_lines(state: &ClusterState, plan: &Plan) -> Vec<String> {
    let before = Load::of(
        &state.brokers,
        state
            .partitions
            .iter()
            .map(|p| (p.replicas.as_slice(), p.size_bytes)),
    );
    let targets: BTreeMap<(&str, i32), &Vec<i32>> = plan
        .moves
        .iter()
        .map(|m| ((m.topic.as_str(), m.partition), &m.target))
        .collect();
    let after = Load::of(
        &state.brokers,
        state.partitions.iter().map(|p| {
            let replicas = targets
                .get(&(p.topic.as_str(), p.partition))
                .map_or(p.replicas.as_slice(), |t| t.as_slice());
            (replicas, p.size_bytes)
        }),
    );
    let mut lines = vec![
        "Balance per broker (replicas, preferred leaders, disk bytes: now -> planned):".into(),
    ];
    for broker in &state.brokers {
        let id = broker.id;
        lines.push(format!(
            "  broker {id}{}: replicas {} -> {}, leaders {} -> {}, bytes {} -> {}",
            broker
                .rack
                .as_ref()
                .map(|r| format!(" (rack {r})"))
                .unwrap_or_default(),
            before.replicas[&id],
            after.replicas[&id],
            before.leaders[&id],
            after.leaders[&id],
            before.disk_bytes[&id],
            after.disk_bytes[&id],
        ));
    }
    let copied_bytes: u64 = plan
        .moves
        .iter()
        .map(|m| {
            let size_bytes = state
                .partitions
                .iter()
                .find(|p| p.topic == m.topic && p.partition == m.partition)
                .map_or(0, |p| p.size_bytes);
            size_bytes * m.added().count() as u64
        })
        .sum();
    lines.push(format!(
        "Plan: {} partitions change, {} replicas copied ({} bytes)",
        plan.moves.len(),
        plan.replicas_moved(),
        copied_bytes
    ));
    for (topic, partition) in &plan.skipped {
        lines.push(format!(
            "Left alone: {topic}-{partition} (a replica on a broker not in the cluster)"
        ));
    }
    lines
}

fn current_of(cluster: &Cluster, plan: &Reassignment) -> Reassignment {
    Reassignment::of(plan.partitions.iter().filter_map(|p| {
        cluster
            .replicas
            .get(&(p.topic.clone(), p.partition))
            .map(|r| (p.topic.as_str(), p.partition, r.as_slice()))
    }))
}

/// `dlog rebalance`: prints what it does; returns the process exit code.
pub async fn run(options: Options) -> Result<u8> {
    anyhow::ensure!(
        !(options.execute && options.verify),
        "--execute and --verify exclude each other"
    );
    let mut admin = Admin::new(&options.bootstrap_server);
    let cluster = admin.describe().await?;
    if options.verify {
        let path = options
            .plan
            .as_ref()
            .context("--verify needs --plan FILE (the plan --execute ran)")?;
        let plan = read_plan(path)?;
        let verification = admin.verify(&cluster, &plan, options.elect_leaders).await?;
        for line in verification.lines() {
            println!("{line}");
        }
        let moving = verification.moving();
        return Ok(if moving == 0 {
            println!("Rebalance complete.");
            0
        } else {
            println!("Rebalance in progress: {moving} partitions still moving.");
            EXIT_IN_PROGRESS
        });
    }
    let proposed = match &options.plan {
        Some(path) => read_plan(path)?,
        None => {
            let sizes = admin.partition_sizes(&cluster).await?;
            let state = client::cluster_state(&cluster, &sizes, &options.topics)?;
            let plan = planner::plan(&state)?;
            for line in balance_lines(&state, &plan) {
                println!("{line}");
            }
            Reassignment::of(
                plan.moves
                    .iter()
                    .map(|m| (m.topic.as_str(), m.partition, m.target.as_slice())),
            )
        }
    };
    println!("Current partition replica assignment");
    println!("{}", current_of(&cluster, &proposed).to_line());
    println!();
    println!("Proposed partition reassignment configuration");
    println!("{}", proposed.to_line());
    if let Some(path) = &options.output {
        std::fs::write(path, proposed.to_line() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if proposed.partitions.is_empty() {
        println!("The cluster is balanced: nothing to move.");
        return Ok(0);
    }
    if !options.execute {
        return Ok(0);
    }
    println!();
    println!("Save the current assignment above to use as --plan (or kafka-reassign-partitions' --reassignment-json-file) during rollback");
    let started = admin
        .execute(&cluster, &proposed, options.throttle_bytes_per_s)
        .await?;
    if let Some(rate) = options.throttle_bytes_per_s {
        println!("Warning: You must run --verify periodically, until the reassignment completes, to ensure the throttle is removed.");
        println!("The inter-broker throttle limit was set to {rate} B/s");
    }
    println!(
        "Successfully started partition reassignments for {}",
        started.join(",")
    );
    Ok(0)
}
