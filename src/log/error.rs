//! Storage's own errors: why the log refused or failed an append, and why a read fell outside
//! the log.
//!
//! They describe storage only. Nothing here names a Kafka protocol error: the handlers map
//! these to Kafka error codes in one place (`handlers::produce::append_error_code`), and a
//! refusal decided before the log is reached (the transaction coordinator's verification of a
//! transactional produce) is the caller's own outcome, never an `AppendError`.

use std::io;

use thiserror::Error;

use crate::record::batch::BatchError;

use super::producer_state::ProducerError;

#[derive(Debug, Error)]
pub enum AppendError {
    #[error("corrupt batch: {0}")]
    Corrupt(BatchError),
    #[error("invalid batch: {0}")]
    InvalidRecord(String),
    #[error("batch of {size_bytes} bytes exceeds max.message.bytes {limit_bytes}")]
    MessageTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("timestamp {timestamp_ms} out of range")]
    InvalidTimestamp { timestamp_ms: i64 },
    #[error("{0}")]
    Producer(ProducerError),
    /// The transaction the batch was verified against ended (its marker was written) before
    /// the batch reached the log.
    #[error("the transaction ended before this verified batch was appended")]
    VerificationVoided,
    /// Batches copied from a leader do not continue this log: their first offset is not
    /// the log end offset, or they overlap each other.
    #[error("batch at offset {base_offset} does not follow the log end offset {log_end_offset}")]
    NotContiguous {
        base_offset: i64,
        log_end_offset: i64,
    },
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

/// A read or a log start move asked for an offset outside `[log start, log end]`.
#[derive(Debug, PartialEq, Eq)]
pub struct OffsetOutOfRange;
