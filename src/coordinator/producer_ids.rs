//! Producer ids for InitProducerId. Ids come from blocks the controller allocates through the
//! metadata log (Kafka's AllocateProducerIds / ProducerIdsRecord); this broker hands them out
//! one by one from its current block and asks for a new block when it runs out. A block is
//! committed before any id in it is used, so a restart never hands out an id twice (the ids
//! left in the block are simply skipped).

use std::sync::Mutex;

use crate::controller::{ApiError, Controller};

/// Ids per block, as Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

#[derive(Default)]
struct Block {
    next: i64,
    /// Exclusive end; `next == end` means exhausted (also the initial state).
    end: i64,
}

#[derive(Default)]
pub struct ProducerIdManager {
    block: Mutex<Block>,
}

impl ProducerIdManager {
    pub fn next_producer_id(&self, controller: &Controller) -> Result<i64, ApiError> {
        let mut block = self.block.lock().expect("producer id lock");
        if block.next >= block.end {
            let first = controller.allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)?;
            assert!(first >= block.end, "controller handed out an old block");
            *block = Block {
                next: first,
                end: first + PRODUCER_ID_BLOCK_SIZE,
            };
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}
