//! Metric names, in one place. Exposed for Prometheus when `--metrics-listen` is given.

/// Record bytes appended, by topic.
pub const BYTES_IN: &str = "dlog_bytes_in_total";
/// Record bytes sent to fetchers, by topic.
pub const BYTES_OUT: &str = "dlog_bytes_out_total";
