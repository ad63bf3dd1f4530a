//! The request memory pool (Kafka's `queued.max.request.bytes`): the bytes of all large
//! requests being read or handled at once, across every connection and listener, are
//! bounded. A connection whose next request does not fit waits before reading its body, so
//! the client's bytes stay in the kernel's socket buffers and TCP pushes back on it.
//!
//! Requests up to `SMALL_REQUEST_BYTES` are not counted: what they can hold is already
//! bounded by `max.connections` × that size, and leaving them out keeps ApiVersions,
//! Metadata, heartbeats and small produces flowing while large requests wait.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests this small are read without a reservation.
pub const SMALL_REQUEST_BYTES: usize = 64 * 1024;

pub struct RequestMemory {
    /// None: `queued.max.request.bytes` ≤ 0, unbounded as in Kafka.
    pool: Option<Arc<Semaphore>>,
    bytes_max: usize,
}

impl RequestMemory {
    pub fn new(bytes_max: Option<usize>) -> RequestMemory {
        let bytes_max = bytes_max.map(|bytes| bytes.clamp(1, Semaphore::MAX_PERMITS));
        RequestMemory {
            pool: bytes_max.map(|bytes| Arc::new(Semaphore::new(bytes))),
            bytes_max: bytes_max.unwrap_or(usize::MAX),
        }
    }

    /// Room for a request of `size_bytes`, held until the permit drops (None: not counted).
    /// A request larger than the whole pool takes all of it, so it is read alone rather than
    /// never.
    pub async fn reserve(&self, size_bytes: usize) -> Option<OwnedSemaphorePermit> {
        let pool = self.pool.as_ref()?;
        if size_bytes <= SMALL_REQUEST_BYTES {
            return None;
        }
        // socket.request.max.bytes is an i32, so a frame's size fits in u32.
        let permits = size_bytes.min(self.bytes_max).min(u32::MAX as usize) as u32;
        if let Ok(permit) = pool.clone().try_acquire_many_owned(permits) {
            return Some(permit);
        }
        crate::metrics::request_memory_waited();
        // The semaphore is never closed.
        pool.clone().acquire_many_owned(permits).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_requests_wait_for_room_and_small_ones_do_not() {
        let memory = RequestMemory::new(Some(1 << 20));
        let first = memory.reserve(600 * 1024).await.expect("counted");
        // A second large request does not fit while the first is held…
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            memory.reserve(600 * 1024),
        )
        .await;
        assert!(waiting.is_err());
        // …a small one is not counted…
        assert!(memory.reserve(1024).await.is_none());
        // …and one larger than the pool takes all of it once the first is done.
        drop(first);
        let whole = memory.reserve(5 << 20).await.expect("counted");
        assert_eq!(whole.num_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn unbounded_counts_nothing() {
        assert!(RequestMemory::new(None).reserve(50 << 20).await.is_none());
    }
}
