//! The metrics listener (`--metrics-listen ADDR`, property `metrics.listen`): a deliberately
//! small HTTP/1.1 server with three GET endpoints, each answered and the connection closed.
//!
//! - `/metrics` — Prometheus text format (0.0.4): the recorder's counters and histograms plus
//!   the scrape-time state from [`collect`](super::collect).
//! - `/health` — liveness: 200 `ok` while the process serves HTTP at all.
//! - `/ready` — readiness: 200 `ready` once the logs are recovered, metadata is replayed and
//!   the Kafka listener is bound; 503 with the current stage before that (and during shutdown).
//!
//! Bad input cannot hurt it: the request head is capped at [`REQUEST_HEAD_BYTES_MAX`] and must
//! arrive within [`REQUEST_TIMEOUT`], at most [`CONNECTIONS_MAX`] connections are served at
//! once (more are closed at accept), and anything else is answered 400/404/405 and closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::node::Node;

/// Largest request line + headers accepted.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time allowed to receive the request head and to send the response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections served at once.
pub const CONNECTIONS_MAX: usize = 64;
/// How often histogram samples are folded in even when nobody scrapes (bounds their memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Where the node is on its way to serving; `/ready` answers 200 only at [`Stage::Ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Opening the data directory, recovering logs, replaying the metadata log.
    Recovering = 0,
    /// Logs open; binding the Kafka listener.
    Binding = 1,
    Ready = 2,
    ShuttingDown = 3,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Recovering => "recovering logs and replaying metadata",
            Stage::Binding => "binding the Kafka listener",
            Stage::Ready => "ready",
            Stage::ShuttingDown => "shutting down",
        }
    }
}

/// What the endpoints report on: the stage, and the broker once it is open.
pub struct NodeStatus {
    stage: AtomicU8,
    broker: OnceLock<Arc<Node>>,
}

impl Default for NodeStatus {
    fn default() -> Self {
        NodeStatus {
            stage: AtomicU8::new(Stage::Recovering as u8),
            broker: OnceLock::new(),
        }
    }
}

impl NodeStatus {
    pub fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Release);
    }

    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Acquire) {
            0 => Stage::Recovering,
            1 => Stage::Binding,
            2 => Stage::Ready,
            _ => Stage::ShuttingDown,
        }
    }

    /// The broker, for scrape-time partition metrics (absent while recovering).
    pub fn set_broker(&self, broker: Arc<Node>) {
        let _ = self.broker.set(broker);
    }
}

/// Binds `address` and serves the endpoints on a task until the process ends.
pub async fn start(
    address: SocketAddr,
    prometheus: PrometheusHandle,
    status: Arc<NodeStatus>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the metrics listener {address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "metrics listening (/metrics, /health, /ready)");
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_INTERVAL).await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(accept_loop(listener, prometheus, status));
    Ok(bound)
}

async fn accept_loop(listener: TcpListener, prometheus: PrometheusHandle, status: Arc<NodeStatus>) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let prometheus = prometheus.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, serve(stream, &prometheus, &status))
                .await;
            drop(permit);
        });
    }
}

/// The outcome of reading a request head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Get(String),
    OtherMethod,
    Bad,
}

/// Parses `METHOD SP TARGET SP HTTP/1.x` from the first line; the query string is ignored.
fn parse_head(head: &[u8]) -> Head {
    let Ok(text) = std::str::from_utf8(head) else {
        return Head::Bad;
    };
    let line = text.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Head::Bad;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Head::Bad;
    }
    let path = target.split('?').next().unwrap_or_default();
    match method {
        "GET" | "HEAD" => Head::Get(path.to_string()),
        _ => Head::OtherMethod,
    }
}

/// Reads until the blank line that ends the head, within the size cap.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            buffer.truncate(end);
            return Some(buffer);
        }
        if buffer.len() > REQUEST_HEAD_BYTES_MAX {
            return Some(Vec::new()); // answered as a bad request
        }
    }
}

async fn serve(mut stream: TcpStream, prometheus: &PrometheusHandle, status: &NodeStatus) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(_) => {
            let _ = respond(&mut stream, 408, "text/plain", b"request timeout\n", false).await;
            return;
        }
    };
    let is_head = head.starts_with(b"HEAD ");
    let (code, content_type, body): (u16, &str, Vec<u8>) = match parse_head(&head) {
        Head::Bad => (400, "text/plain", b"bad request\n".to_vec()),
        Head::OtherMethod => (405, "text/plain", b"method not allowed\n".to_vec()),
        Head::Get(path) => match path.as_str() {
            "/metrics" => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                render(prometheus, status).into_bytes(),
            ),
            "/health" => (200, "text/plain", b"ok\n".to_vec()),
            "/ready" => match status.stage() {
                Stage::Ready => (200, "text/plain", b"ready\n".to_vec()),
                stage => (
                    503,
                    "text/plain",
                    format!("not ready: {}\n", stage.describe()).into_bytes(),
                ),
            },
            _ => (404, "text/plain", b"not found\n".to_vec()),
        },
    };
    let _ = tokio::time::timeout(
        REQUEST_TIMEOUT,
        respond(&mut stream, code, content_type, &body, is_head),
    )
    .await;
}

/// The whole exposition: recorder first, then the scrape-time families.
pub fn render(prometheus: &PrometheusHandle, status: &NodeStatus) -> String {
    let mut output = prometheus.render();
    let ready = status.stage() == Stage::Ready;
    super::collect::append(&mut output, status.broker.get().map(Arc::as_ref), ready);
    output
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let header = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Head::Get("/metrics".into())
        );
        assert_eq!(
            parse_head(b"GET /ready?x=1 HTTP/1.0"),
            Head::Get("/ready".into())
        );
        assert_eq!(parse_head(b"POST /metrics HTTP/1.1"), Head::OtherMethod);
        assert_eq!(parse_head(b"GET /metrics"), Head::Bad);
        assert_eq!(parse_head(b"\xff\xfe"), Head::Bad);
        assert_eq!(parse_head(b""), Head::Bad);
        assert_eq!(parse_head(b"GET metrics HTTP/1.1"), Head::Bad);
    }
}
