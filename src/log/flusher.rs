//! Group commit: the log directory's flusher thread, which fsyncs partition logs off the
//! request path. An append that `flush.messages` says must be on disk before it is
//! acknowledged (or that the periodic flush policy finds due) queues its partition here
//! instead of fsyncing under the partition lock on a runtime worker; the thread takes every
//! queued partition at once and syncs each, so all the appends that arrived while the previous
//! fsync was in flight share the next one (Kafka fsyncs inside the append, one request after
//! another; Redpanda coalesces them like this).
//!
//! Waiters are not tracked here: a partition's [`PartitionLog::acknowledgeable_end_offset`]
//! says what may be acknowledged, and the listener given to [`Flusher::on_flushed`] is called
//! after each round so that whoever waits (produce responses, the high watermark, follower
//! fetchers) checks again.
//!
//! Invariants:
//! - A partition is in the queue at most once (its `flush_queued` flag), so the queue is
//!   bounded by the number of hosted partitions.
//! - No partition lock is held while a file is synced: the files and the offset they cover
//!   are taken under the lock, synced without it, and the recovery point is moved under it
//!   again (and not at all if the log was truncated in between).

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

use super::partition::PartitionLog;

/// Upper bound on partitions queued at once: far above what one broker hosts, so reaching it
/// means the one-entry-per-partition invariant broke.
const QUEUED_LOGS_MAX: usize = 1_000_000;

type Listener = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Queue {
    logs: Vec<Arc<PartitionLog>>,
    stopping: bool,
}

#[derive(Default)]
pub struct Flusher {
    queue: Mutex<Queue>,
    wakeup: Condvar,
    listener: OnceLock<Listener>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    /// A flusher with its thread running.
    pub fn start() -> std::io::Result<Arc<Flusher>> {
        let flusher = Arc::new(Flusher::default());
        let running = flusher.clone();
        let thread = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || running.run())?;
        *flusher.thread.lock().expect("flusher thread lock") = Some(thread);
        Ok(flusher)
    }

    /// `listener` is called after every round of fsyncs (at most one listener).
    pub fn on_flushed(&self, listener: Listener) {
        if self.listener.set(listener).is_err() {
            panic!("the flusher has one listener");
        }
    }

    /// Queues `log` for the next round (the caller checked it is not queued already).
    pub(super) fn enqueue(&self, log: Arc<PartitionLog>) {
        let mut queue = self.queue.lock().expect("flusher queue lock");
        assert!(queue.logs.len() < QUEUED_LOGS_MAX, "flusher queue bound");
        queue.logs.push(log);
        drop(queue);
        self.wakeup.notify_one();
    }

    /// Finishes the queued flushes and stops the thread; later requests are not served (the
    /// clean shutdown flushes every log itself).
    pub fn stop(&self) {
        self.queue.lock().expect("flusher queue lock").stopping = true;
        self.wakeup.notify_one();
        let thread = self.thread.lock().expect("flusher thread lock").take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the log flusher thread panicked");
            }
        }
    }

    fn run(&self) {
        loop {
            let logs = {
                let mut queue = self.queue.lock().expect("flusher queue lock");
                while queue.logs.is_empty() && !queue.stopping {
                    queue = self.wakeup.wait(queue).expect("flusher queue lock");
                }
                if queue.logs.is_empty() {
                    return;
                }
                std::mem::take(&mut queue.logs)
            };
            for log in logs {
                if let Err(error) = log.flush_queued() {
                    tracing::error!(
                        topic = log.topic(),
                        partition = log.partition(),
                        %error,
                        "fsync failed: nothing more of this log is acknowledged as durable"
                    );
                }
            }
            if let Some(listener) = self.listener.get() {
                listener();
            }
        }
    }
}
