//! Partition placement: which brokers hold the replicas of new partitions. Leaders and
//! replicas are spread round-robin over the live (registered, unfenced) brokers, in an order
//! that alternates racks when `broker.rack` is set, so consecutive replicas of a partition
//! land on different racks (as Kafka's rack-aware assignment). The replicas of one partition
//! are always distinct brokers, so the replication factor is at most the live broker count.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::image::MetadataImage;
use super::ApiError;

/// Live broker ids ordered so that neighbours are on different racks: the first broker of
/// each rack, then the second of each, and so on (racks and brokers in id order).
fn rack_alternated_brokers(image: &MetadataImage) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for broker in image.live_brokers() {
        by_rack
            .entry(broker.rack.as_deref().unwrap_or(""))
            .or_default()
            .push(broker.id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|index| {
            by_rack
                .values()
                .filter_map(move |brokers| brokers.get(index).copied())
        })
        .collect()
}

/// Checks a replication factor against the live brokers: each replica needs its own.
pub fn validate_replication_factor(
    image: &MetadataImage,
    replication_factor: i16,
) -> Result<(), ApiError> {
    let live = image.live_brokers().count();
    if replication_factor < 1 {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!("Replication factor must be larger than 0, got {replication_factor}."),
        ));
    }
    if replication_factor as usize > live {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {live} broker(s) are registered."),
        ));
    }
    Ok(())
}

/// Replica lists for `partition_count` new partitions. `start` (random in production) picks
/// the broker that leads the first one, so topics do not all start on the same broker.
pub fn place(
    image: &MetadataImage,
    partition_count: usize,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>, ApiError> {
    validate_replication_factor(image, replication_factor)?;
    let brokers = rack_alternated_brokers(image);
    assert!(
        !brokers.is_empty(),
        "a valid replication factor implies a live broker"
    );
    let lists = (0..partition_count)
        .map(|partition| {
            (0..replication_factor as usize)
                .map(|replica| brokers[(start + partition + replica) % brokers.len()])
                .collect()
        })
        .collect();
    Ok(lists)
}

/// Checks an explicit replica list (CreateTopics / CreatePartitions assignments): registered
/// brokers, each once. Fenced ones are allowed (as Kafka allows them) as long as one replica
/// is live to lead; the others join the ISR through AlterPartition once they catch up.
pub fn validate_assignment(image: &MetadataImage, replicas: &[i32]) -> Result<(), ApiError> {
    let invalid = |message: String| {
        Err(ApiError::new(
            ResponseError::InvalidReplicaAssignment,
            message,
        ))
    };
    if replicas.is_empty() || replicas.len() > image.brokers.len() {
        return invalid(format!(
            "A replica list must hold 1 to {} (the registered brokers) brokers, got {replicas:?}.",
            image.brokers.len()
        ));
    }
    for (index, id) in replicas.iter().enumerate() {
        if replicas[..index].contains(id) {
            return invalid(format!("Duplicate brokers in replica list {replicas:?}."));
        }
        if !image.brokers.contains_key(id) {
            return invalid(format!("Unknown broker {id} in replica list {replicas:?}."));
        }
    }
    if !replicas.iter().any(|id| image.is_live(*id)) {
        return invalid(format!(
            "All brokers specified in the replica list {replicas:?} are fenced."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(brokers: &[(i32, Option<&str>, bool)]) -> MetadataImage {
        MetadataImage::with_brokers(brokers)
    }

    #[test]
    fn leaders_spread_over_live_brokers_only() {
        let image = image_with(&[(1, None, false), (2, None, true), (3, None, false)]);
        let lists = place(&image, 4, 1, 0).unwrap();
        assert_eq!(lists, vec![vec![1], vec![3], vec![1], vec![3]]);
        let shifted = place(&image, 1, 1, 1).unwrap();
        assert_eq!(shifted, vec![vec![3]]);
    }

    #[test]
    fn racks_alternate() {
        let image = image_with(&[
            (1, Some("a"), false),
            (2, Some("a"), false),
            (3, Some("b"), false),
            (4, Some("b"), false),
        ]);
        assert_eq!(rack_alternated_brokers(&image), vec![1, 3, 2, 4]);
    }

    #[test]
    fn replicas_of_a_partition_on_distinct_live_brokers() {
        let image = image_with(&[
            (1, Some("a"), false),
            (2, Some("a"), false),
            (3, Some("b"), false),
            (4, Some("b"), true),
        ]);
        let lists = place(&image, 3, 3, 0).unwrap();
        assert_eq!(lists, vec![vec![1, 3, 2], vec![3, 2, 1], vec![2, 1, 3]]);
        for list in &lists {
            assert!(!list.contains(&4), "a fenced broker takes no replica");
        }
        // Racks alternate: with racks of equal size, each pair of replicas spans both.
        let even = image_with(&[
            (1, Some("a"), false),
            (2, Some("a"), false),
            (3, Some("b"), false),
            (4, Some("b"), false),
        ]);
        let rack = |id: i32| if id <= 2 { "a" } else { "b" };
        for list in place(&even, 8, 2, 0).unwrap() {
            assert_ne!(rack(list[0]), rack(list[1]), "{list:?}");
        }
    }

    #[test]
    fn replication_factor_bounded_by_live_brokers() {
        let image = image_with(&[(1, None, false), (2, None, false), (3, None, true)]);
        let error = place(&image, 1, 3, 0).unwrap_err();
        assert_eq!(error.error, ResponseError::InvalidReplicationFactor);
        assert!(
            error.message.contains("only 2 broker(s)"),
            "{}",
            error.message
        );
        assert_eq!(place(&image, 1, 2, 0).unwrap(), vec![vec![1, 2]]);
        assert_eq!(
            place(&image, 1, 0, 0).unwrap_err().error,
            ResponseError::InvalidReplicationFactor
        );
        let none = image_with(&[(1, None, true)]);
        assert_eq!(
            place(&none, 1, 1, 0).unwrap_err().error,
            ResponseError::InvalidReplicationFactor
        );
    }

    #[test]
    fn explicit_assignments_checked() {
        let image = image_with(&[(1, None, false), (2, None, false), (3, None, true)]);
        assert!(validate_assignment(&image, &[2]).is_ok());
        assert!(validate_assignment(&image, &[1, 2]).is_ok());
        assert!(
            validate_assignment(&image, &[3, 2, 1]).is_ok(),
            "fenced, not alone"
        );
        assert!(
            validate_assignment(&image, &[3]).is_err(),
            "no live replica"
        );
        assert!(validate_assignment(&image, &[7]).is_err());
        assert!(validate_assignment(&image, &[]).is_err());
        assert!(validate_assignment(&image, &[1, 1]).is_err());
        assert!(validate_assignment(&image, &[1, 2, 3, 1]).is_err());
    }
}
