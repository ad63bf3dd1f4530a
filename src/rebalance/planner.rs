//! The balancer's planner: a pure function from a cluster's state (brokers and their racks,
//! the replicas of the partitions it may move, their sizes on disk) to a reassignment plan.
//!
//! Goals, in order (each one only as far as the ones before allow):
//! 1. racks: a partition keeps its replicas on as many racks as it can (`min(RF, racks)`),
//!    and one whose replicas share a rack when they need not is repaired first;
//! 2. replicas: per-broker replica counts differ by at most one, by moving as few replicas
//!    as possible, each from the broker that holds the most to the one that holds the least;
//!    among the partitions that could move, the one that best evens out disk bytes;
//! 3. leaders: the preferred leader (the first replica) of each partition is reordered so
//!    that per-broker preferred-leader counts are as even as the replica placement allows,
//!    reordering rather than moving data.
//!
//! Moves never put two replicas of a partition on one broker and keep every replication
//! factor. A partition with a replica on a broker not in `brokers` (offline, unregistered) is
//! left as it is: moving it would need a replica that cannot be read from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub type BrokerId = i32;

/// Upper bound of planning steps (moves plus leader transfers). Each step strictly lowers a
/// sum of squares, so real plans end far below it; reaching it is a bug.
pub const STEPS_MAX: usize = 10_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub id: BrokerId,
    pub rack: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    /// In preference order: the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// The partition's size on disk at one replica (the largest DescribeLogDirs reports).
    pub size_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub brokers: Vec<Broker>,
    pub partitions: Vec<Partition>,
}

/// One partition whose replica list changes (set or order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub current: Vec<BrokerId>,
    pub target: Vec<BrokerId>,
}

impl Move {
    /// Replicas the move creates (each one copies the partition's data).
    pub fn added(&self) -> impl Iterator<Item = BrokerId> + '_ {
        self.target
            .iter()
            .copied()
            .filter(|b| !self.current.contains(b))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Sorted by topic, then partition.
    pub moves: Vec<Move>,
    /// Partitions left alone because a replica is on a broker not in the cluster state.
    pub skipped: Vec<(String, i32)>,
}

impl Plan {
    /// Replicas copied to a new broker in total.
    pub fn replicas_moved(&self) -> usize {
        self.moves.iter().map(|m| m.added().count()).sum()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no brokers")]
    NoBrokers,
    #[error("broker {0} is listed twice")]
    DuplicateBroker(BrokerId),
    #[error("{topic}-{partition} has no replicas or a broker twice: {replicas:?}")]
    BadReplicas {
        topic: String,
        partition: i32,
        replicas: Vec<BrokerId>,
    },
}

/// Per-broker figures of an assignment, over the brokers of the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub replicas: BTreeMap<BrokerId, usize>,
    pub leaders: BTreeMap<BrokerId, usize>,
    pub disk_bytes: BTreeMap<BrokerId, u64>,
}

impl Load {
    pub fn of<'a>(
        brokers: &[Broker],
        assignment: impl IntoIterator<Item = (&'a [BrokerId], u64)>,
    ) -> Load {
        let mut load = Load::default();
        for broker in brokers {
            load.replicas.insert(broker.id, 0);
            load.leaders.insert(broker.id, 0);
            load.disk_bytes.insert(broker.id, 0);
        }
        for (replicas, size_bytes) in assignment {
            for (index, broker) in replicas.iter().enumerate() {
                if let Some(count) = load.replicas.get_mut(broker) {
                    *count += 1;
                    *load.disk_bytes.get_mut(broker).expect("same keys") += size_bytes;
                    if index == 0 {
                        *load.leaders.get_mut(broker).expect("same keys") += 1;
                    }
                }
            }
        }
        load
    }
}

/// Largest minus smallest value (0 when empty).
pub fn spread<V: Copy + Ord + std::ops::Sub<Output = V> + Default>(
    values: &BTreeMap<BrokerId, V>,
) -> V {
    match (values.values().max(), values.values().min()) {
        (Some(&max), Some(&min)) => max - min,
        _ => V::default(),
    }
}

/// The racks of the brokers; a broker without `broker.rack` is a rack of its own (so a cluster
/// without racks is balanced by brokers alone).
struct Racks {
    of: BTreeMap<BrokerId, String>,
    count: usize,
}

impl Racks {
    fn new(brokers: &[Broker]) -> Racks {
        let of: BTreeMap<BrokerId, String> = brokers
            .iter()
            .map(|b| {
                let rack = match &b.rack {
                    Some(rack) => format!("rack:{rack}"),
                    None => format!("broker:{}", b.id),
                };
                (b.id, rack)
            })
            .collect();
        let count = of.values().collect::<BTreeSet<_>>().len();
        Racks { of, count }
    }

    fn distinct(&self, replicas: &[BrokerId]) -> usize {
        replicas
            .iter()
            .map(|b| self.of.get(b))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Racks a partition of this replication factor should span.
    fn needed(&self, replication_factor: usize) -> usize {
        replication_factor.min(self.count)
    }
}

/// The planner's working state: the target assignment and the load it puts on each broker.
struct Planning<'a> {
    partitions: &'a [Partition],
    /// Index-aligned with `partitions`; `None` for a partition left alone.
    target: Vec<Option<Vec<BrokerId>>>,
    racks: Racks,
    replicas: BTreeMap<BrokerId, usize>,
    leaders: BTreeMap<BrokerId, usize>,
    disk_bytes: BTreeMap<BrokerId, u64>,
    steps: usize,
}

impl Planning<'_> {
    fn step(&mut self) {
        self.steps += 1;
        assert!(self.steps <= STEPS_MAX, "planner did not converge");
    }

    /// Replaces `from` by `to` in partition `index`, keeping its position in the order.
    fn replace(&mut self, index: usize, from: BrokerId, to: BrokerId) {
        self.step();
        let size_bytes = self.partitions[index].size_bytes;
        let target = self.target[index].as_mut().expect("a movable partition");
        assert!(!target.contains(&to), "never two replicas on one broker");
        let position = target
            .iter()
            .position(|&b| b == from)
            .expect("from holds it");
        target[position] = to;
        *self.replicas.get_mut(&from).expect("known") -= 1;
        *self.replicas.get_mut(&to).expect("known") += 1;
        *self.disk_bytes.get_mut(&from).expect("known") -= size_bytes;
        *self.disk_bytes.get_mut(&to).expect("known") += size_bytes;
        if position == 0 {
            *self.leaders.get_mut(&from).expect("known") -= 1;
            *self.leaders.get_mut(&to).expect("known") += 1;
        }
    }

    /// Whether replacing `from` by `to` in partition `index` keeps the racks it must span.
    fn rack_allows(&self, index: usize, from: BrokerId, to: BrokerId) -> bool {
        let current = self.target[index].as_ref().expect("a movable partition");
        let after: Vec<BrokerId> = current
            .iter()
            .map(|&b| if b == from { to } else { b })
            .collect();
        let needed = self.racks.needed(current.len());
        let (before, after) = (self.racks.distinct(current), self.racks.distinct(&after));
        after >= needed.min(before)
    }

    /// Goal 1, racks: partitions whose replicas share a rack when they need not: move a replica of a
    /// shared rack to the least loaded broker of a rack the partition does not use.
    fn repair_racks(&mut self) {
        for index in 0..self.partitions.len() {
            while let Some(current) = self.target[index].clone() {
                if self.racks.distinct(&current) >= self.racks.needed(current.len()) {
                    break;
                }
                let used: BTreeSet<&String> = current.iter().map(|b| &self.racks.of[b]).collect();
                // The last replica of a rack that holds two (keeps the preferred leader).
                let Some(&from) = current.iter().rev().find(|&&b| {
                    current
                        .iter()
                        .filter(|&&o| self.racks.of[&o] == self.racks.of[&b])
                        .count()
                        > 1
                }) else {
                    break;
                };
                let to = self
                    .replicas
                    .iter()
                    .filter(|(b, _)| !used.contains(&self.racks.of[b]))
                    .min_by_key(|(b, count)| (**count, self.disk_bytes[b], **b))
                    .map(|(&b, _)| b);
                match to {
                    Some(to) => self.replace(index, from, to),
                    None => break,
                }
            }
        }
    }

    /// Goal 2, replica counts: from the fullest broker to the emptiest while they differ by two or
    /// more and a partition can go; for each pair, the partition that adds the fewest copies
    /// (moving again a replica this plan already moves is free) and best evens disk bytes.
    fn balance_replicas(&mut self) {
        while let Some((index, from, to)) = self.best_replica_move() {
            self.replace(index, from, to);
        }
    }

    fn best_replica_move(&self) -> Option<(usize, BrokerId, BrokerId)> {
        let mut sources: Vec<BrokerId> = self.replicas.keys().copied().collect();
        sources.sort_by_key(|b| {
            (
                std::cmp::Reverse(self.replicas[b]),
                std::cmp::Reverse(self.disk_bytes[b]),
                *b,
            )
        });
        let mut destinations = sources.clone();
        destinations.reverse();
        for &from in &sources {
            for &to in &destinations {
                if self.replicas[&from] < self.replicas[&to] + 2 {
                    break;
                }
                if let Some(index) = self.best_partition_to_move(from, to) {
                    return Some((index, from, to));
                }
            }
        }
        None
    }

    fn best_partition_to_move(&self, from: BrokerId, to: BrokerId) -> Option<usize> {
        let gap_bytes = self.disk_bytes[&from] as i128 - self.disk_bytes[&to] as i128;
        (0..self.partitions.len())
            .filter(|&index| {
                self.target[index]
                    .as_ref()
                    .is_some_and(|t| t.contains(&from) && !t.contains(&to))
                    && self.rack_allows(index, from, to)
            })
            .min_by_key(|&index| {
                let original = &self.partitions[index].replicas;
                // Copies this replacement adds to the plan: -1 if `to` held it originally (a
                // move undone), 0 if `from` was itself added by the plan, else 1.
                let copies =
                    i32::from(!original.contains(&to)) - i32::from(!original.contains(&from));
                let size_bytes = self.partitions[index].size_bytes as i128;
                // Disk bytes between the two brokers after the move (smaller is more even).
                let gap_after_bytes = (gap_bytes - 2 * size_bytes).abs();
                (copies, gap_after_bytes, index)
            })
    }

    /// Goal 3, preferred leaders: while some broker leads two or more partitions more than another
    /// it can hand leadership to along a chain (partition led by u with v among its replicas:
    /// u → v), make each chain's next broker the first replica of that partition. A chain
    /// (augmenting path) lets balance flow where no partition links the two brokers directly.
    fn balance_leaders(&mut self) {
        while let Some(chain) = self.leader_chain() {
            for (index, to) in chain {
                self.step();
                let target = self.target[index].as_mut().expect("a movable partition");
                let from = target[0];
                let position = target.iter().position(|&b| b == to).expect("a replica");
                target.swap(0, position);
                *self.leaders.get_mut(&from).expect("known") -= 1;
                *self.leaders.get_mut(&to).expect("known") += 1;
            }
        }
    }

    /// A chain of (partition index, its new first replica) from a broker to one that leads at
    /// least two fewer partitions, found breadth first from the brokers that lead the most;
    /// None when no such chain exists (as balanced as the replicas allow).
    fn leader_chain(&self) -> Option<Vec<(usize, BrokerId)>> {
        // Partitions led by each broker, in a stable order; ones this plan already changes
        // first, so that untouched partitions stay out of the plan where possible.
        let mut led: BTreeMap<BrokerId, Vec<usize>> = BTreeMap::new();
        for (index, target) in self.target.iter().enumerate() {
            if let Some(target) = target {
                led.entry(target[0]).or_default().push(index);
            }
        }
        for indexes in led.values_mut() {
            indexes.sort_by_key(|&i| {
                (
                    self.target[i].as_ref() == Some(&self.partitions[i].replicas),
                    i,
                )
            });
        }
        let mut starts: Vec<(BrokerId, usize)> =
            self.leaders.iter().map(|(&b, &c)| (b, c)).collect();
        starts.sort_by_key(|&(b, c)| (std::cmp::Reverse(c), b));
        for (start, most) in starts {
            // broker → (partition index, broker it came from)
            let mut came_from: BTreeMap<BrokerId, (usize, BrokerId)> = BTreeMap::new();
            let mut queue = VecDeque::from([start]);
            let mut visited = BTreeSet::from([start]);
            while let Some(u) = queue.pop_front() {
                for &index in led.get(&u).map(Vec::as_slice).unwrap_or(&[]) {
                    let target = self.target[index].as_ref().expect("movable");
                    for &v in &target[1..] {
                        if !self.leaders.contains_key(&v) || !visited.insert(v) {
                            continue;
                        }
                        came_from.insert(v, (index, u));
                        if self.leaders[&v] + 2 <= most {
                            let mut chain = Vec::new();
                            let mut at = v;
                            while at != start {
                                let (index, previous) = came_from[&at];
                                chain.push((index, at));
                                at = previous;
                            }
                            chain.reverse();
                            return Some(chain);
                        }
                        queue.push_back(v);
                    }
                }
            }
        }
        None
    }
}

/// The plan for `state` (see the module comment for its goals).
pub fn plan(state: &ClusterState) -> Result<Plan, PlanError> {
    if state.brokers.is_empty() {
        return Err(PlanError::NoBrokers);
    }
    let mut known = BTreeSet::new();
    for broker in &state.brokers {
        if !known.insert(broker.id) {
            return Err(PlanError::DuplicateBroker(broker.id));
        }
    }
    let mut skipped = Vec::new();
    let mut target = Vec::with_capacity(state.partitions.len());
    for partition in &state.partitions {
        let distinct: BTreeSet<_> = partition.replicas.iter().collect();
        if partition.replicas.is_empty() || distinct.len() != partition.replicas.len() {
            return Err(PlanError::BadReplicas {
                topic: partition.topic.clone(),
                partition: partition.partition,
                replicas: partition.replicas.clone(),
            });
        }
        if partition.replicas.iter().all(|b| known.contains(b)) {
            target.push(Some(partition.replicas.clone()));
        } else {
            skipped.push((partition.topic.clone(), partition.partition));
            target.push(None);
        }
    }
    let load = Load::of(
        &state.brokers,
        state
            .partitions
            .iter()
            .zip(&target)
            .filter(|(_, t)| t.is_some())
            .map(|(p, _)| (p.replicas.as_slice(), p.size_bytes)),
    );
    let mut planning = Planning {
        partitions: &state.partitions,
        target,
        racks: Racks::new(&state.brokers),
        replicas: load.replicas,
        leaders: load.leaders,
        disk_bytes: load.disk_bytes,
        steps: 0,
    };
    planning.repair_racks();
    planning.balance_replicas();
    planning.balance_leaders();
    let mut moves: Vec<Move> = state
        .partitions
        .iter()
        .zip(planning.target)
        .filter_map(|(partition, target)| {
            let target = target?;
            assert_eq!(target.len(), partition.replicas.len(), "keeps the RF");
            (target != partition.replicas).then(|| Move {
                topic: partition.topic.clone(),
                partition: partition.partition,
                current: partition.replicas.clone(),
                target,
            })
        })
        .collect();
    moves.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(Plan { moves, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(ids: &[BrokerId], racks: Option<usize>) -> Vec<Broker> {
        ids.iter()
            .map(|&id| Broker {
                id,
                rack: racks.map(|n| format!("r{}", id as usize % n)),
            })
            .collect()
    }

    fn partition(topic: &str, partition: i32, replicas: &[BrokerId], size_bytes: u64) -> Partition {
        Partition {
            topic: topic.into(),
            partition,
            replicas: replicas.to_vec(),
            size_bytes,
        }
    }

    /// The assignment after the plan: every partition's target, or its replicas if unmoved.
    fn after(state: &ClusterState, plan: &Plan) -> Vec<Vec<BrokerId>> {
        state
            .partitions
            .iter()
            .map(|p| {
                plan.moves
                    .iter()
                    .find(|m| m.topic == p.topic && m.partition == p.partition)
                    .map_or(p.replicas.clone(), |m| m.target.clone())
            })
            .collect()
    }

    fn load(state: &ClusterState, assignment: &[Vec<BrokerId>]) -> Load {
        Load::of(
            &state.brokers,
            assignment
                .iter()
                .zip(&state.partitions)
                .map(|(r, p)| (r.as_slice(), p.size_bytes)),
        )
    }

    /// Three brokers with RF 2 partitions, broker 4 new and empty: the 3→4 grow.
    fn grown(partitions: i32, replication_factor: usize) -> ClusterState {
        let partitions = (0..partitions)
            .map(|p| {
                let replicas: Vec<BrokerId> = (0..replication_factor)
                    .map(|r| 1 + ((p as usize + r) % 3) as BrokerId)
                    .collect();
                partition("t", p, &replicas, 1000 + p as u64)
            })
            .collect();
        ClusterState {
            brokers: brokers(&[1, 2, 3, 4], None),
            partitions,
        }
    }

    #[test]
    fn a_grown_cluster_spreads_onto_the_new_broker_with_the_fewest_moves() {
        let state = grown(12, 2);
        let plan = super::plan(&state).unwrap();
        let assignment = after(&state, &plan);
        let load = load(&state, &assignment);
        // 24 replicas over 4 brokers: 6 each; broker 4 had none, so exactly 6 copies.
        assert_eq!(
            load.replicas.values().copied().collect::<Vec<_>>(),
            [6, 6, 6, 6]
        );
        assert_eq!(plan.replicas_moved(), 6);
        assert_eq!(
            load.leaders.values().copied().collect::<Vec<_>>(),
            [3, 3, 3, 3]
        );
    }

    #[test]
    fn a_balanced_cluster_gets_an_empty_plan() {
        let state = ClusterState {
            brokers: brokers(&[1, 2, 3], None),
            partitions: vec![
                partition("t", 0, &[1, 2], 10),
                partition("t", 1, &[2, 3], 10),
                partition("t", 2, &[3, 1], 10),
            ],
        };
        assert_eq!(plan(&state).unwrap(), Plan::default());
    }

    #[test]
    fn replicas_sharing_a_rack_are_spread_when_racks_allow() {
        // Racks: 1,3 in r1; 2,4 in r0. Partition 0 has both replicas in r1.
        let state = ClusterState {
            brokers: brokers(&[1, 2, 3, 4], Some(2)),
            partitions: vec![
                partition("t", 0, &[1, 3], 10),
                partition("t", 1, &[2, 1], 10),
                partition("t", 2, &[4, 3], 10),
                partition("t", 3, &[2, 3], 10),
            ],
        };
        let plan = super::plan(&state).unwrap();
        let assignment = after(&state, &plan);
        let racks = Racks::new(&state.brokers);
        assert!(
            assignment.iter().all(|r| racks.distinct(r) == 2),
            "{assignment:?}"
        );
    }

    #[test]
    fn disk_bytes_choose_which_partition_moves() {
        // Broker 1 holds a big and a small partition, broker 2 nothing: one must move; the
        // big one evens out the bytes better... unless it leaves 2 heavier: the gap decides.
        let state = ClusterState {
            brokers: brokers(&[1, 2], None),
            partitions: vec![partition("t", 0, &[1], 1_000), partition("t", 1, &[1], 10)],
        };
        let plan = super::plan(&state).unwrap();
        assert_eq!(plan.moves.len(), 1);
        // Gap 1010: moving 1000 leaves |1010 - 2000| = 990, moving 10 leaves 990 as well;
        // with a third small partition the big one is the better move.
        let state = ClusterState {
            brokers: brokers(&[1, 2], None),
            partitions: vec![
                partition("t", 0, &[1], 1_000),
                partition("t", 1, &[1], 10),
                partition("t", 2, &[1], 10),
                partition("t", 3, &[1], 10),
            ],
        };
        let plan = super::plan(&state).unwrap();
        let assignment = after(&state, &plan);
        assert_eq!(assignment[0], vec![2], "{plan:?}");
    }

    #[test]
    fn partitions_on_unknown_brokers_are_left_alone() {
        let state = ClusterState {
            brokers: brokers(&[1, 2], None),
            partitions: vec![
                partition("t", 0, &[1, 9], 10),
                partition("t", 1, &[1, 2], 10),
            ],
        };
        let plan = super::plan(&state).unwrap();
        assert_eq!(plan.skipped, vec![("t".to_string(), 0)]);
        assert!(plan.moves.iter().all(|m| m.partition != 0));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(plan(&ClusterState::default()), Err(PlanError::NoBrokers));
        let state = ClusterState {
            brokers: brokers(&[1, 1], None),
            partitions: vec![],
        };
        assert_eq!(plan(&state), Err(PlanError::DuplicateBroker(1)));
        let state = ClusterState {
            brokers: brokers(&[1, 2], None),
            partitions: vec![partition("t", 0, &[1, 1], 1)],
        };
        assert!(matches!(plan(&state), Err(PlanError::BadReplicas { .. })));
    }

    /// A random cluster: 1..8 brokers (racks or none), partitions of RF ≤ brokers placed at
    /// random (possibly all on a few brokers, as after growing).
    fn cluster() -> impl Strategy<Value = (ClusterState, Option<usize>)> {
        (1usize..9, prop::option::of(1usize..4), 0usize..40).prop_flat_map(|(n, racks, count)| {
            let ids: Vec<BrokerId> = (1..=n as BrokerId).collect();
            let occupied = 1..=n; // how many of the brokers hold the existing replicas
            (
                Just(ids),
                Just(racks),
                occupied,
                prop::collection::vec((1usize..=n.min(4), any::<u64>(), 0u64..1_000_000), count),
            )
                .prop_map(|(ids, racks, occupied, specs)| {
                    let partitions = specs
                        .into_iter()
                        .enumerate()
                        .map(|(index, (rf, seed, size_bytes))| {
                            let mut pool: Vec<BrokerId> = ids[..occupied.max(rf)].to_vec();
                            // A seeded shuffle (deterministic per case).
                            let mut x = seed | 1;
                            for i in (1..pool.len()).rev() {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                pool.swap(i, (x % (i as u64 + 1)) as usize);
                            }
                            pool.truncate(rf);
                            partition(&format!("t{}", index % 3), index as i32, &pool, size_bytes)
                        })
                        .collect();
                    (
                        ClusterState {
                            brokers: brokers(&ids, racks),
                            partitions,
                        },
                        racks,
                    )
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn plans_keep_the_invariants((state, racks) in cluster()) {
            let plan = super::plan(&state).unwrap();
            let assignment = after(&state, &plan);
            let rack_of = Racks::new(&state.brokers);
            for (replicas, original) in assignment.iter().zip(&state.partitions) {
                // Never two replicas on one broker; the replication factor kept; only known brokers.
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), replicas.len());
                prop_assert_eq!(replicas.len(), original.replicas.len());
                prop_assert!(replicas.iter().all(|b| state.brokers.iter().any(|k| k.id == *b)));
                // Racks: spread over min(RF, racks), never fewer racks than before.
                let needed = rack_of.needed(replicas.len());
                prop_assert!(rack_of.distinct(replicas) >= needed,
                    "{:?} spans {} racks, needs {}", replicas, rack_of.distinct(replicas), needed);
            }
            let before = load(&state, &state.partitions.iter().map(|p| p.replicas.clone()).collect::<Vec<_>>());
            let load = load(&state, &assignment);
            if racks.is_none() {
                // Without racks: replica counts within one, with the fewest moves possible
                // (every broker above the ceiling of the mean sheds, every one below the
                // floor fills).
                prop_assert!(spread(&load.replicas) <= 1, "{:?}", load.replicas);
                let total: usize = before.replicas.values().sum();
                let brokers = state.brokers.len();
                let (floor, ceiling) = (total / brokers, total.div_ceil(brokers));
                let over: usize = before.replicas.values().map(|&c| c.saturating_sub(ceiling)).sum();
                let under: usize = before.replicas.values().map(|&c| floor.saturating_sub(c)).sum();
                prop_assert!(plan.replicas_moved() <= over.max(under),
                    "moved {} > max({}, {}) from {:?}", plan.replicas_moved(), over, under, before.replicas);
            }
            // Leaders never less even than before.
            prop_assert!(spread(&load.leaders) <= spread(&before.leaders).max(1),
                "leaders {:?} from {:?}", load.leaders, before.leaders);
        }

        #[test]
        fn a_plan_applied_plans_nothing_more((state, _racks) in cluster()) {
            let first = super::plan(&state).unwrap();
            let applied = ClusterState {
                brokers: state.brokers.clone(),
                partitions: state.partitions.iter().zip(after(&state, &first))
                    .map(|(p, replicas)| Partition { replicas, ..p.clone() }).collect(),
            };
            let second = super::plan(&applied).unwrap();
            prop_assert_eq!(second.replicas_moved(), 0, "{:?}", second);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Racks of equal size, RF = racks, every partition on the first broker of each rack
        /// (the cluster before each rack grew): replicas move only within racks, and counts
        /// end within one everywhere.
        #[test]
        fn grown_racks_balance_within_racks(racks in 1usize..4, per_rack in 1usize..4, count in 0usize..40) {
            let ids: Vec<BrokerId> = (1..=(racks * per_rack) as BrokerId).collect();
            // broker id % racks is its rack; the first `racks` ids cover every rack once.
            let first: Vec<BrokerId> = (1..=racks as BrokerId).collect();
            let state = ClusterState {
                brokers: brokers(&ids, Some(racks)),
                partitions: (0..count).map(|p| {
                    let mut replicas = first.clone();
                    replicas.rotate_left(p % racks);
                    partition("t", p as i32, &replicas, 10)
                }).collect(),
            };
            let plan = super::plan(&state).unwrap();
            let assignment = after(&state, &plan);
            let rack_of = Racks::new(&state.brokers);
            prop_assert!(assignment.iter().all(|r| rack_of.distinct(r) == racks));
            // Every move stays within a rack: a partition's racks are the same before and after.
            for m in &plan.moves {
                let racks_of = |replicas: &[BrokerId]| {
                    let mut racks: Vec<&String> = replicas.iter().map(|b| &rack_of.of[b]).collect();
                    racks.sort();
                    racks
                };
                prop_assert_eq!(racks_of(&m.current), racks_of(&m.target), "{:?}", m);
            }
            let load = load(&state, &assignment);
            prop_assert!(spread(&load.replicas) <= 1, "{:?}", load.replicas);
        }
    }

    #[test]
    fn leaders_balance_without_racks_when_replicas_do() {
        for partitions in [4, 9, 12, 30] {
            for replication_factor in [1, 2, 3] {
                let state = grown(partitions, replication_factor);
                let plan = super::plan(&state).unwrap();
                let load = load(&state, &after(&state, &plan));
                assert!(
                    spread(&load.replicas) <= 1,
                    "{partitions}x{replication_factor}: {load:?}"
                );
                assert!(
                    spread(&load.leaders) <= 1,
                    "{partitions}x{replication_factor}: {load:?}"
                );
            }
        }
    }
}
