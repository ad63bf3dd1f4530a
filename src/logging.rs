//! Log output: `tracing` to stderr, as text for people or JSON (one object per line) for log
//! shippers.
//!
//! Level: `RUST_LOG` when set (any `EnvFilter` directive, e.g. `info,dlog::log=debug`), else
//! the `log.level` property (same syntax, default `info`). Format: `log.format=text|json`.
//! Nothing is logged per request at `info`: requests are counted in metrics instead, and
//! per-connection events (closes, bad frames) are `debug`.

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

use crate::config::Properties;

/// The filter in force: `rust_log` (the `RUST_LOG` variable) if set and not empty, else
/// `log.level`.
fn filter(rust_log: Option<&str>, properties: &Properties) -> Result<EnvFilter> {
    match rust_log {
        Some(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives)
            .with_context(|| format!("RUST_LOG: invalid filter '{directives}'")),
        _ => {
            let level = properties.get(crate::config::LOG_LEVEL);
            EnvFilter::try_new(level).with_context(|| format!("log.level: invalid level '{level}'"))
        }
    }
}

/// Installs the process-wide logger from the configuration. Called once, at start.
pub fn init(properties: &Properties) -> Result<()> {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), properties)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if properties
        .get(crate::config::LOG_FORMAT)
        .eq_ignore_ascii_case("json")
    {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    }
    .map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// A text logger at `info` (or `RUST_LOG`) for the moments before the configuration is read,
/// so that warnings about the configuration itself are seen.
pub fn startup_logger() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_over_log_level() {
        let mut properties = Properties::default();
        properties.set("log.level", "warn,dlog::log=debug").unwrap();
        let from_property = filter(None, &properties).unwrap().to_string();
        assert!(from_property.contains("warn") && from_property.contains("dlog::log=debug"));
        assert_eq!(
            filter(Some(""), &properties).unwrap().to_string(),
            from_property
        );
        assert_eq!(
            filter(Some("error"), &properties).unwrap().to_string(),
            "error"
        );
        assert_eq!(
            filter(None, &Properties::default()).unwrap().to_string(),
            "info"
        );
        properties.set("log.level", "dlog=[").unwrap();
        assert!(filter(None, &properties).is_err());
    }
}
