//! The reassignment JSON of `kafka-reassign-partitions` (`--reassignment-json-file`, and what
//! `--generate` prints): `{"version":1,"partitions":[{"topic":..,"partition":..,
//! "replicas":[..],"log_dirs":["any",..]}]}`.

use serde::{Deserialize, Serialize};

use super::planner::BrokerId;

/// The only version of the format.
pub const VERSION: i32 = 1;
/// A plan file larger than this is refused (a million partitions fit in far less).
pub const PLAN_SIZE_BYTES_MAX: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub version: i32,
    pub partitions: Vec<PartitionReplicas>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReplicas {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<BrokerId>,
    /// "any" per replica: dlog and Kafka choose the directory.
    #[serde(default)]
    pub log_dirs: Vec<String>,
}

impl Reassignment {
    /// The JSON of these (topic, partition, replicas), sorted as the Kafka tool sorts them.
    pub fn of<'a>(partitions: impl IntoIterator<Item = (&'a str, i32, &'a [BrokerId])>) -> Self {
        let mut partitions: Vec<PartitionReplicas> = partitions
            .into_iter()
            .map(|(topic, partition, replicas)| PartitionReplicas {
                topic: topic.to_string(),
                partition,
                replicas: replicas.to_vec(),
                log_dirs: vec!["any".to_string(); replicas.len()],
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Reassignment {
            version: VERSION,
            partitions,
        }
    }

    /// One line, as the Kafka tool prints it.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// Parses and checks a plan file's text: version 1, no partition twice, no broker twice in
    /// a partition, log_dirs (when given) one per replica.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let plan: Reassignment = serde_json::from_str(text)?;
        anyhow::ensure!(
            plan.version == VERSION,
            "unsupported plan version {}",
            plan.version
        );
        let mut seen = std::collections::BTreeSet::new();
        for p in &plan.partitions {
            anyhow::ensure!(
                seen.insert((p.topic.as_str(), p.partition)),
                "{}-{} appears twice in the plan",
                p.topic,
                p.partition
            );
            let distinct: std::collections::BTreeSet<_> = p.replicas.iter().collect();
            anyhow::ensure!(
                !p.replicas.is_empty() && distinct.len() == p.replicas.len(),
                "{}-{}: replicas must be distinct and not empty: {:?}",
                p.topic,
                p.partition,
                p.replicas
            );
            anyhow::ensure!(
                p.log_dirs.is_empty() || p.log_dirs.len() == p.replicas.len(),
                "{}-{}: log_dirs must have one entry per replica",
                p.topic,
                p.partition
            );
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kafka_tool_format_round_trips() {
        let plan = Reassignment::of([("b", 1, &[2, 3][..]), ("a", 0, &[1][..])]);
        let line = plan.to_line();
        assert_eq!(
            line,
            r#"{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[1],"log_dirs":["any"]},{"topic":"b","partition":1,"replicas":[2,3],"log_dirs":["any","any"]}]}"#
        );
        assert_eq!(Reassignment::parse(&line).unwrap(), plan);
        // The Kafka tool's files may leave log_dirs out.
        let bare = r#"{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[1,2]}]}"#;
        assert_eq!(
            Reassignment::parse(bare).unwrap().partitions[0].replicas,
            [1, 2]
        );
    }

    #[test]
    fn bad_plans_are_refused() {
        for text in [
            "",
            "{}",
            r#"{"version":2,"partitions":[]}"#,
            r#"{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[1,1]}]}"#,
            r#"{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[]}]}"#,
            r#"{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[1]},{"topic":"a","partition":0,"replicas":[2]}]}"#,
        ] {
            assert!(Reassignment::parse(text).is_err(), "{text}");
        }
    }
}
