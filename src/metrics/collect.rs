//! Scrape-time families: read when `/metrics` is requested, written straight into the
//! exposition. Partition state (offsets, size, segments) is one lock per partition per scrape,
//! nothing per request; the process families come from `/proc/self`.

use std::fmt::Write;
use std::sync::Arc;

use super::*;
use crate::node::Node;
use crate::replica::PartitionLog;

/// Appends the scrape-time families to `output` (the Prometheus text format).
pub fn append(output: &mut String, broker: Option<&Node>, ready: bool) {
    family(output, READY, "gauge", "1 when /ready answers 200");
    sample(output, READY, &[], if ready { 1.0 } else { 0.0 });
    family(output, BUILD_INFO, "gauge", "The running build");
    sample(
        output,
        BUILD_INFO,
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    process(output);
    if let Some(broker) = broker {
        let mut logs = broker.replicas.logs().all();
        logs.sort_by(|a, b| (a.topic(), a.partition()).cmp(&(b.topic(), b.partition())));
        partitions(output, &logs);
        replication(output, broker, &logs);
        disk(output, broker);
        groups(
            output,
            &broker.groups.metrics_snapshot(),
            |topic, partition| {
                broker
                    .replicas
                    .logs()
                    .get(topic, partition)
                    .map(|log| log.offsets().log_end_offset)
            },
        );
    }
}

fn family(output: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(output, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(output: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    output.push_str(name);
    if !labels.is_empty() {
        output.push('{');
        for (index, (key, value)) in labels.iter().enumerate() {
            if index > 0 {
                output.push(',');
            }
            output.push_str(key);
            output.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => output.push_str("\\\\"),
                    '"' => output.push_str("\\\""),
                    '\n' => output.push_str("\\n"),
                    c => output.push(c),
                }
            }
            output.push('"');
        }
        output.push('}');
    }
    let _ = writeln!(output, " {value}");
}

/// Per-partition gauges, one family at a time as the format requires.
fn partitions(output: &mut String, logs: &[Arc<PartitionLog>]) {
    let stats: Vec<_> = logs
        .iter()
        .map(|log| (log.topic(), log.partition().to_string(), log.stats()))
        .collect();
    family(
        output,
        PARTITIONS,
        "gauge",
        "Partitions hosted by this broker",
    );
    sample(output, PARTITIONS, &[], stats.len() as f64);
    let families: [(&str, &str, fn(&crate::log::partition::LogStats) -> f64); 4] = [
        (PARTITION_LOG_START_OFFSET, "First readable offset", |s| {
            s.log_start_offset as f64
        }),
        (
            PARTITION_LOG_END_OFFSET,
            "Offset of the next record appended",
            |s| s.log_end_offset as f64,
        ),
        (
            PARTITION_SIZE_BYTES,
            "Bytes of the partition's segment files",
            |s| s.size_bytes as f64,
        ),
        (PARTITION_SEGMENTS, "Segments in the partition's log", |s| {
            s.segment_count as f64
        }),
    ];
    for (name, help, value) in families {
        family(output, name, "gauge", help);
        for (topic, partition, stats) in &stats {
            sample(
                output,
                name,
                &[("topic", topic), ("partition", partition)],
                value(stats),
            );
        }
    }
}

/// Replication health: high watermarks of hosted partitions; for partitions led here the
/// under-replicated, under- and at-min-ISR counts and each follower's lag; partitions with
/// no live leader as this node's metadata image sees them (Kafka reports those on the
/// controller only).
fn replication(output: &mut String, broker: &Node, logs: &[Arc<PartitionLog>]) {
    use crate::metrics::cluster::*;
    family(
        output,
        PARTITION_HIGH_WATERMARK,
        "gauge",
        "Offset below which records are on every in-sync replica (what consumers read)",
    );
    for log in logs {
        let high_watermark = broker
            .replicas
            .high_watermark_of(log.topic(), log.partition());
        if high_watermark >= 0 {
            sample(
                output,
                PARTITION_HIGH_WATERMARK,
                &[
                    ("topic", log.topic()),
                    ("partition", &log.partition().to_string()),
                ],
                high_watermark as f64,
            );
        }
    }
    let (mut under_replicated, mut under_min_isr, mut at_min_isr) = (0, 0, 0);
    let mut lags: Vec<(String, String, String, i64)> = Vec::new();
    for (topic, partition, led) in broker.replicas.led_replicated() {
        let Some((replicas, isr, follower_ends)) = led.replication.leader_view() else {
            continue;
        };
        let min_isr = led.log.config().min_insync_replicas;
        under_replicated += usize::from(isr < replicas);
        under_min_isr += usize::from(isr < min_isr);
        at_min_isr += usize::from(isr == min_isr && replicas > 1);
        let end = led.log.offsets().log_end_offset;
        for (follower, follower_end) in follower_ends {
            lags.push((
                topic.clone(),
                partition.to_string(),
                follower.to_string(),
                end - follower_end,
            ));
        }
    }
    let image = broker.image();
    let offline = image
        .topics
        .values()
        .flat_map(|topic| topic.partitions.values())
        .filter(|partition| image.live_leader(partition) < 0)
        .count();
    for (name, help, value) in [
        (
            UNDER_REPLICATED_PARTITIONS,
            "Partitions led here whose ISR is smaller than their replica set",
            under_replicated,
        ),
        (
            UNDER_MIN_ISR_PARTITIONS,
            "Partitions led here whose ISR is below min.insync.replicas (acks=all produce refused)",
            under_min_isr,
        ),
        (
            AT_MIN_ISR_PARTITIONS,
            "Partitions led here whose ISR is exactly min.insync.replicas",
            at_min_isr,
        ),
        (
            OFFLINE_PARTITIONS,
            "Partitions without a live leader, as this node's metadata sees them",
            offline,
        ),
    ] {
        family(output, name, "gauge", help);
        sample(output, name, &[], value as f64);
    }
    family(
        output,
        FOLLOWER_LAG_RECORDS,
        "gauge",
        "On the leader: how far a follower's log end trails the leader's",
    );
    for (topic, partition, follower, lag) in &lags {
        sample(
            output,
            FOLLOWER_LAG_RECORDS,
            &[
                ("topic", topic),
                ("partition", partition),
                ("follower", follower),
            ],
            *lag as f64,
        );
    }
}

fn disk(output: &mut String, broker: &Node) {
    let Ok(stat) = nix::sys::statvfs::statvfs(broker.replicas.logs().data_dir()) else {
        return;
    };
    let fragment = stat.fragment_size() as f64;
    let dir = broker.replicas.logs().data_dir().to_string_lossy();
    family(
        output,
        LOG_DIR_TOTAL_BYTES,
        "gauge",
        "Size of the file system holding log.dirs",
    );
    sample(
        output,
        LOG_DIR_TOTAL_BYTES,
        &[("dir", &dir)],
        stat.blocks() as f64 * fragment,
    );
    family(
        output,
        LOG_DIR_FREE_BYTES,
        "gauge",
        "Space available to dlog in log.dirs",
    );
    sample(
        output,
        LOG_DIR_FREE_BYTES,
        &[("dir", &dir)],
        stat.blocks_available() as f64 * fragment,
    );
    let space = broker.replicas.logs().space();
    family(
        output,
        LOG_DIR_FREE_WARN_BYTES,
        "gauge",
        "Free space in log.dirs below which the broker warns (log.dir.free.space.warn.bytes)",
    );
    sample(
        output,
        LOG_DIR_FREE_WARN_BYTES,
        &[("dir", &dir)],
        space
            .settings()
            .free_warn_bytes(stat.blocks() as u64 * stat.fragment_size() as u64) as f64,
    );
    family(
        output,
        LOG_DIR_FULL,
        "gauge",
        "1 while writes are refused because log.dirs is full",
    );
    sample(
        output,
        LOG_DIR_FULL,
        &[("dir", &dir)],
        if space.is_full() { 1.0 } else { 0.0 },
    );
}

/// Consumer-group families from the coordinator's snapshot (see [`groups`]): state, members,
/// committed offsets and lag = `log_end_offset(topic, partition)` − committed offset (0 when
/// the committed offset is at or past the end; no lag sample for a partition not hosted).
pub fn groups(
    output: &mut String,
    snapshot: &[groups::GroupSnapshot],
    log_end_offset: impl Fn(&str, i32) -> Option<i64>,
) {
    if snapshot.is_empty() {
        return;
    }
    family(
        output,
        groups::MEMBERS,
        "gauge",
        "Members of the consumer group",
    );
    for group in snapshot {
        sample(
            output,
            groups::MEMBERS,
            &[("group", &group.group)],
            group.members as f64,
        );
    }
    family(
        output,
        groups::STATE,
        "gauge",
        "1 for the group's current state",
    );
    for group in snapshot {
        for state in groups::STATES {
            let value = if *state == group.state { 1.0 } else { 0.0 };
            sample(
                output,
                groups::STATE,
                &[("group", &group.group), ("state", state)],
                value,
            );
        }
    }
    family(
        output,
        groups::COMMITTED_OFFSET,
        "gauge",
        "Committed offset",
    );
    for group in snapshot {
        for (topic, partition, offset) in &group.committed {
            let partition = partition.to_string();
            let labels = [
                ("group", group.group.as_str()),
                ("topic", topic),
                ("partition", &partition),
            ];
            sample(output, groups::COMMITTED_OFFSET, &labels, *offset as f64);
        }
    }
    family(
        output,
        groups::LAG,
        "gauge",
        "Log end offset minus committed offset",
    );
    for group in snapshot {
        for (topic, partition, offset) in &group.committed {
            let Some(end) = log_end_offset(topic, *partition) else {
                continue;
            };
            let partition = partition.to_string();
            let labels = [
                ("group", group.group.as_str()),
                ("topic", topic),
                ("partition", &partition),
            ];
            sample(output, groups::LAG, &labels, (end - offset).max(0) as f64);
        }
    }
}

/// Linux reports process times in USER_HZ ticks, 100 per second on every architecture.
const USER_HZ: f64 = 100.0;

/// Fields after the command name in `/proc/self/stat` (the name may hold spaces).
fn self_stat_fields() -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &text[text.rfind(')')? + 2..];
    Some(after_name.split(' ').map(str::to_string).collect())
}

fn process(output: &mut String) {
    if let Some(rss_kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
    {
        family(
            output,
            PROCESS_RESIDENT_MEMORY_BYTES,
            "gauge",
            "Resident memory",
        );
        sample(output, PROCESS_RESIDENT_MEMORY_BYTES, &[], rss_kb * 1024.0);
    }
    if let Some(fields) = self_stat_fields() {
        // After the name: state is field 3, so utime (14) is index 11, stime 12, starttime 19.
        let tick = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (tick(11), tick(12)) {
            family(
                output,
                PROCESS_CPU_SECONDS,
                "counter",
                "CPU time, user and system",
            );
            sample(output, PROCESS_CPU_SECONDS, &[], (user + system) / USER_HZ);
        }
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
            stat.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(start_ticks), Some(boot_time)) = (tick(19), boot_time) {
            family(
                output,
                PROCESS_START_TIME_SECONDS,
                "gauge",
                "Start time, Unix seconds",
            );
            sample(
                output,
                PROCESS_START_TIME_SECONDS,
                &[],
                boot_time + start_ticks / USER_HZ,
            );
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        family(output, PROCESS_OPEN_FDS, "gauge", "Open file descriptors");
        // Minus the descriptor read_dir itself holds.
        let open = entries.count().saturating_sub(1);
        sample(output, PROCESS_OPEN_FDS, &[], open as f64);
    }
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        family(output, PROCESS_MAX_FDS, "gauge", "File descriptor limit");
        sample(output, PROCESS_MAX_FDS, &[], soft as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values() {
        let mut output = String::new();
        sample(&mut output, "dlog_x", &[("topic", "a\"b\\c\nd")], 1.5);
        assert_eq!(output, "dlog_x{topic=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }

    #[test]
    fn group_lag_is_end_minus_committed() {
        let snapshot = [groups::GroupSnapshot {
            group: "billing".into(),
            state: "Stable",
            members: 2,
            committed: vec![
                ("orders".into(), 0, 40),
                ("orders".into(), 1, 99),
                ("gone".into(), 0, 5),
            ],
        }];
        let mut output = String::new();
        groups(&mut output, &snapshot, |topic, partition| {
            match (topic, partition) {
                ("orders", 0) => Some(100),
                ("orders", 1) => Some(50),
                _ => None,
            }
        });
        for line in [
            "dlog_group_members{group=\"billing\"} 2",
            "dlog_group_state{group=\"billing\",state=\"Stable\"} 1",
            "dlog_group_state{group=\"billing\",state=\"Empty\"} 0",
            "dlog_group_committed_offset{group=\"billing\",topic=\"orders\",partition=\"0\"} 40",
            "dlog_group_lag_records{group=\"billing\",topic=\"orders\",partition=\"0\"} 60",
            "dlog_group_lag_records{group=\"billing\",topic=\"orders\",partition=\"1\"} 0",
        ] {
            assert!(output.lines().any(|l| l == line), "{line} in\n{output}");
        }
        assert!(!output.contains("dlog_group_lag_records{group=\"billing\",topic=\"gone\""));
        let mut empty = String::new();
        groups(&mut empty, &[], |_, _| None);
        assert!(empty.is_empty());
    }

    #[test]
    fn process_families_are_read() {
        let mut output = String::new();
        process(&mut output);
        for name in [
            PROCESS_RESIDENT_MEMORY_BYTES,
            PROCESS_CPU_SECONDS,
            PROCESS_OPEN_FDS,
            PROCESS_MAX_FDS,
            PROCESS_START_TIME_SECONDS,
        ] {
            assert!(output.contains(&format!("\n{name} ")), "{name} in {output}");
        }
    }
}
