//! Server-side assignors of KIP-848 consumer groups (`group.consumer.assignors`).
//!
//! - `uniform`: spreads all subscribed partitions as evenly as the subscriptions allow, and is
//!   sticky: partitions stay where they were unless balance requires a move.
//! - `range`: per topic, consecutive ranges of partitions to the subscribed members in member
//!   id order (co-partitioned topics line up), as the classic range assignor does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::consumer_group::Assignment;

type Subscriptions = [(String, Vec<String>)];

fn subscribers<'a>(subscriptions: &'a Subscriptions, topic: &str) -> Vec<&'a str> {
    let mut members: Vec<&str> = subscriptions
        .iter()
        .filter(|(_, topics)| topics.iter().any(|t| t == topic))
        .map(|(member, _)| member.as_str())
        .collect();
    members.sort_unstable();
    members
}

fn empty_for(subscriptions: &Subscriptions) -> HashMap<String, Assignment> {
    subscriptions
        .iter()
        .map(|(member, _)| (member.clone(), Assignment::new()))
        .collect()
}

pub fn range(
    subscriptions: &Subscriptions,
    topics: &BTreeMap<String, i32>,
) -> HashMap<String, Assignment> {
    let mut output = empty_for(subscriptions);
    for (topic, count) in topics {
        let members = subscribers(subscriptions, topic);
        if members.is_empty() {
            continue;
        }
        let per_member = *count as usize / members.len();
        let extra = *count as usize % members.len();
        let mut next = 0i32;
        for (index, member) in members.iter().enumerate() {
            let take = per_member + usize::from(index < extra);
            let partitions: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            if !partitions.is_empty() {
                output
                    .get_mut(*member)
                    .expect("subscriber has an entry")
                    .insert(topic.clone(), partitions);
            }
        }
        assert_eq!(next, *count, "range assigns every partition of {topic}");
    }
    output
}

pub fn uniform(
    subscriptions: &Subscriptions,
    topics: &BTreeMap<String, i32>,
    previous: &HashMap<String, Assignment>,
) -> HashMap<String, Assignment> {
    let subscribed: HashMap<&str, BTreeSet<&str>> = subscriptions
        .iter()
        .map(|(m, t)| (m.as_str(), t.iter().map(String::as_str).collect()))
        .collect();
    let mut members: Vec<&str> = subscribed.keys().copied().collect();
    members.sort_unstable();
    let all: Vec<(&str, i32)> = topics
        .iter()
        .filter(|(topic, _)| subscribed.values().any(|t| t.contains(topic.as_str())))
        .flat_map(|(topic, count)| (0..*count).map(move |p| (topic.as_str(), p)))
        .collect();
    if members.is_empty() {
        return HashMap::new();
    }
    let quota = all.len().div_ceil(members.len());
    let mut owner: BTreeMap<(&str, i32), &str> = BTreeMap::new();
    let mut counts: HashMap<&str, usize> = members.iter().map(|m| (*m, 0)).collect();
    // 1. Stickiness: keep what each member had, if still valid, up to the quota.
    for member in &members {
        let Some(had) = previous.get(*member) else {
            continue;
        };
        for (topic, partitions) in had {
            for partition in partitions {
                let Some((name, count)) = topics.get_key_value(topic) else {
                    continue;
                };
                let key = (name.as_str(), *partition);
                let valid = partition < count && subscribed[member].contains(name.as_str());
                if valid && counts[member] < quota && !owner.contains_key(&key) {
                    owner.insert(key, member);
                    *counts.get_mut(member).expect("member") += 1;
                }
            }
        }
    }
    // 2. Every other partition to the least-loaded member subscribed to its topic.
    for key in &all {
        if owner.contains_key(key) {
            continue;
        }
        let chosen = members
            .iter()
            .filter(|m| subscribed[**m].contains(key.0))
            .min_by_key(|m| (counts[**m], **m))
            .copied();
        if let Some(member) = chosen {
            owner.insert(*key, member);
            *counts.get_mut(member).expect("member") += 1;
        }
    }
    // 3. Even out: move partitions from the most to the least loaded eligible member until no
    // move narrows a gap of two or more. Each move lowers the sum of squares, so this ends;
    // the bound makes that explicit.
    for _ in 0..=all.len() {
        let mut moved = false;
        for key in &all {
            let Some(current) = owner.get(key).copied() else {
                continue;
            };
            let target = members
                .iter()
                .filter(|m| subscribed[**m].contains(key.0))
                .min_by_key(|m| (counts[**m], **m))
                .copied();
            if let Some(target) = target {
                if counts[target] + 1 < counts[current] {
                    owner.insert(*key, target);
                    *counts.get_mut(current).expect("member") -= 1;
                    *counts.get_mut(target).expect("member") += 1;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut output = empty_for(subscriptions);
    for ((topic, partition), member) in owner {
        output
            .get_mut(member)
            .expect("member has an entry")
            .entry(topic.to_string())
            .or_default()
            .insert(partition);
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[&str], topics: &[&str]) -> Vec<(String, Vec<String>)> {
        members
            .iter()
            .map(|m| {
                (
                    m.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    fn counts(assignment: &HashMap<String, Assignment>) -> Vec<usize> {
        let mut counts: Vec<usize> = assignment
            .values()
            .map(|a| a.values().map(BTreeSet::len).sum())
            .collect();
        counts.sort_unstable();
        counts
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let topics: BTreeMap<String, i32> = [("t".to_string(), 6)].into();
        let first = uniform(&subs(&["a", "b", "c"], &["t"]), &topics, &HashMap::new());
        assert_eq!(counts(&first), [2, 2, 2]);
        let second = uniform(&subs(&["a", "b", "c", "d"], &["t"]), &topics, &first);
        assert_eq!(counts(&second), [1, 1, 2, 2]);
        // Only the new member's partitions moved.
        let moved: usize = ["a", "b", "c"]
            .iter()
            .map(|m| difference_len(&first[*m], &second[*m]))
            .sum();
        assert_eq!(moved, 1, "only what the new member needs moves");
        let third = uniform(&subs(&["a", "b"], &["t"]), &topics, &second);
        assert_eq!(counts(&third), [3, 3]);
    }

    fn difference_len(a: &Assignment, b: &Assignment) -> usize {
        a.iter()
            .map(|(t, ps)| {
                ps.iter()
                    .filter(|p| !b.get(t).is_some_and(|x| x.contains(p)))
                    .count()
            })
            .sum()
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let topics: BTreeMap<String, i32> = [("x".to_string(), 4), ("y".to_string(), 2)].into();
        let mut subscriptions = subs(&["a"], &["x"]);
        subscriptions.extend(subs(&["b"], &["x", "y"]));
        let assignment = uniform(&subscriptions, &topics, &HashMap::new());
        assert!(!assignment["a"].contains_key("y"));
        assert_eq!(counts(&assignment), [3, 3]);
    }

    #[test]
    fn range_gives_consecutive_partitions() {
        let topics: BTreeMap<String, i32> = [("t".to_string(), 7)].into();
        let assignment = range(&subs(&["b", "a", "c"], &["t"]), &topics);
        assert_eq!(assignment["a"]["t"], [0, 1, 2].into());
        assert_eq!(assignment["b"]["t"], [3, 4].into());
        assert_eq!(assignment["c"]["t"], [5, 6].into());
    }
}
