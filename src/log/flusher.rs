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

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Log flushes done (each one fdatasync per segment file past the recovery point).
    flushes: AtomicU64,
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

    /// Log flushes done so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
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
            self.round(logs);
        }
    }

    /// One round: flushes each queued log once, then tells the listener.
    fn round(&self, logs: Vec<Arc<PartitionLog>>) {
        for log in logs {
            match log.flush_queued() {
                Ok(true) => {
                    self.flushes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(error) => tracing::error!(
                    topic = log.topic(),
                    partition = log.partition(),
                    %error,
                    "fsync failed: nothing more of this log is acknowledged as durable"
                ),
            }
        }
        if let Some(listener) = self.listener.get() {
            listener();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::partition::tests::{config, open_unclean as open};
    use crate::record::builder::BatchBuilder;

    impl Flusher {
        /// Runs one round on what is queued now, on the caller's thread (the flusher of
        /// these tests has no thread, so what is queued waits for this).
        fn run_queued(&self) {
            let logs = std::mem::take(&mut self.queue.lock().unwrap().logs);
            self.round(logs);
        }

        fn queued(&self) -> usize {
            self.queue.lock().unwrap().logs.len()
        }
    }

    fn attached(dir: &std::path::Path, flush_messages: &str) -> (Arc<Flusher>, Arc<PartitionLog>) {
        let flusher = Arc::new(Flusher::default());
        let log = Arc::new(open(dir, &config(&[("flush.messages", flush_messages)])));
        log.attach_flusher(flusher.clone(), Arc::downgrade(&log));
        (flusher, log)
    }

    fn batch(now_ms: i64) -> Vec<u8> {
        BatchBuilder::new(now_ms)
            .record(Some(b"k"), Some(b"v"), now_ms)
            .build()
    }

    #[test]
    fn appends_waiting_on_one_flush_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let (flusher, log) = attached(dir.path(), "1");
        let now = crate::clock::now_ms();
        for _ in 0..50 {
            log.append(&batch(now), now).unwrap();
        }
        // Nothing synced in the appends: none is acknowledgeable, the log is queued once.
        assert_eq!(log.offsets().log_end_offset, 50);
        assert_eq!(log.acknowledgeable_end_offset(), 0);
        assert_eq!(log.recovery_point(), 0);
        assert_eq!(flusher.queued(), 1);
        flusher.run_queued();
        assert_eq!(flusher.flushes(), 1, "one fsync for fifty appends");
        assert_eq!(log.recovery_point(), 50);
        assert_eq!(log.acknowledgeable_end_offset(), 50);
        // Queued again by the next owed flush; a round with nothing new syncs nothing.
        log.append(&batch(now), now).unwrap();
        assert_eq!(log.acknowledgeable_end_offset(), 50);
        flusher.run_queued();
        flusher.run_queued();
        assert_eq!(flusher.flushes(), 2);
        assert_eq!(log.acknowledgeable_end_offset(), 51);
    }

    #[test]
    fn a_flush_planned_before_a_truncation_does_not_cover_the_cut_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (flusher, log) = attached(dir.path(), "1");
        let now = crate::clock::now_ms();
        for _ in 0..10 {
            log.append(&batch(now), now).unwrap();
        }
        let plan = log.lock_local_for_test(|local| local.plan_flush()).unwrap();
        log.truncate_to(4).unwrap();
        plan.sync().unwrap();
        log.lock_local_for_test(|local| local.complete_flush(&plan, now));
        assert!(log.recovery_point() <= 4, "{}", log.recovery_point());
        // What was owed after the cut is flushed by the next round.
        log.append(&batch(now), now).unwrap();
        flusher.run_queued();
        assert_eq!(log.recovery_point(), 5);
        assert_eq!(log.acknowledgeable_end_offset(), 5);
    }

    #[test]
    fn larger_flush_messages_keep_kafkas_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let (flusher, log) = attached(dir.path(), "3");
        let now = crate::clock::now_ms();
        log.append(&batch(now), now).unwrap();
        log.append(&batch(now), now).unwrap();
        // Below flush.messages nothing is owed: acknowledgeable without a flush.
        assert_eq!(log.acknowledgeable_end_offset(), 2);
        assert_eq!(flusher.queued(), 0);
        log.append(&batch(now), now).unwrap();
        // The third owes the flush of all three.
        assert_eq!(log.acknowledgeable_end_offset(), 0);
        assert_eq!(flusher.queued(), 1);
        flusher.run_queued();
        assert_eq!(log.recovery_point(), 3);
        assert_eq!(log.acknowledgeable_end_offset(), 3);
    }

    #[test]
    fn the_thread_flushes_concurrent_appenders_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start().unwrap();
        let log = Arc::new(open(dir.path(), &config(&[("flush.messages", "1")])));
        log.attach_flusher(flusher.clone(), Arc::downgrade(&log));
        let appenders: Vec<_> = (0..8)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let now = crate::clock::now_ms();
                        let end = log.append(&batch(now), now).unwrap().last_offset + 1;
                        while log.acknowledgeable_end_offset() < end {
                            std::thread::yield_now();
                        }
                        assert!(log.recovery_point() >= end);
                    }
                })
            })
            .collect();
        for appender in appenders {
            appender.join().unwrap();
        }
        assert_eq!(log.recovery_point(), 200);
        flusher.stop();
        assert!(flusher.flushes() >= 1 && flusher.flushes() <= 200);
    }
}
