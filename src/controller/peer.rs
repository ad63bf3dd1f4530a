//! A small Kafka-protocol client for node-to-node calls: Raft RPCs between controllers,
//! forwarded admin requests, and (later) BrokerRegistration / BrokerHeartbeat.
//!
//! One [`PeerClient`] per remote address. It connects lazily, pipelines requests over one TCP
//! connection (responses are matched by correlation id), bounds the requests in flight, gives
//! every call a timeout, and reconnects on the next call after any failure. Cheap to clone.
//!
//! ```ignore
//! let peer = PeerClient::new("127.0.0.1:19093", "dlog-controller-1");
//! let response: VoteResponse = peer.send(2, &request).await?;      // typed
//! let body = peer.send_raw(ApiKey::CreateTopics, 7, body).await?;  // forwarding
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Requests one client may have in flight; callers beyond it wait (within their timeout).
pub const IN_FLIGHT_MAX: usize = 64;
/// Largest response frame accepted from a peer.
pub const RESPONSE_SIZE_BYTES_MAX: usize = 64 << 20;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("connecting to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("connection to {0} lost")]
    Disconnected(String),
    #[error("malformed response from {address}: {reason}")]
    Malformed { address: String, reason: String },
}

type Waiters = Arc<Mutex<HashMap<i32, oneshot::Sender<Bytes>>>>;

struct ForgetWaiter {
    waiters: Waiters,
    correlation_id: i32,
}

impl Drop for ForgetWaiter {
    fn drop(&mut self) {
        self.waiters
            .lock()
            .expect("waiters")
            .remove(&self.correlation_id);
    }
}

/// One live connection: frames to write go through `outbound`; a reader task completes the
/// waiters by correlation id. Dropped (and replaced on the next call) once either task ends.
struct Connection {
    outbound: mpsc::Sender<Bytes>,
    waiters: Waiters,
}

impl Connection {
    fn is_alive(&self) -> bool {
        !self.outbound.is_closed()
    }
}

struct Inner {
    address: String,
    client_id: StrBytes,
    correlation_id: AtomicI32,
    in_flight: Semaphore,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    request_timeout: Duration,
}

#[derive(Clone)]
pub struct PeerClient {
    inner: Arc<Inner>,
}

impl PeerClient {
    /// A client for `address` (`host:port`); nothing is connected until the first call.
    pub fn new(address: impl Into<String>, client_id: impl Into<String>) -> PeerClient {
        PeerClient::with_timeout(address, client_id, REQUEST_TIMEOUT)
    }

    pub fn with_timeout(
        address: impl Into<String>,
        client_id: impl Into<String>,
        request_timeout: Duration,
    ) -> PeerClient {
        PeerClient {
            inner: Arc::new(Inner {
                address: address.into(),
                client_id: StrBytes::from_string(client_id.into()),
                correlation_id: AtomicI32::new(0),
                in_flight: Semaphore::new(IN_FLIGHT_MAX),
                connection: tokio::sync::Mutex::new(None),
                request_timeout,
            }),
        }
    }

    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Sends a typed request at `version` and decodes its response.
    pub async fn send<R>(&self, version: i16, request: &R) -> Result<R::Response, PeerError>
    where
        R: Request + Encodable,
        R::Response: Decodable,
    {
        let api_key = ApiKey::try_from(R::KEY).expect("a known api key");
        let mut body = BytesMut::new();
        request
            .encode(&mut body, version)
            .unwrap_or_else(|e| panic!("cannot encode {api_key:?} v{version}: {e}"));
        let mut response = self.send_raw(api_key, version, body.freeze()).await?;
        R::Response::decode(&mut response, version).map_err(|e| PeerError::Malformed {
            address: self.inner.address.clone(),
            reason: e.to_string(),
        })
    }

    /// Sends an already encoded request body (the bytes after the request header) and returns
    /// the response body (the bytes after the response header): what forwarding needs.
    pub async fn send_raw(
        &self,
        api_key: ApiKey,
        version: i16,
        body: Bytes,
    ) -> Result<Bytes, PeerError> {
        self.send_raw_within(api_key, version, body, self.inner.request_timeout)
            .await
    }

    /// [`Self::send_raw`] with its own timeout (a forwarded request the controller may take
    /// longer to answer than the client's usual one).
    pub async fn send_raw_within(
        &self,
        api_key: ApiKey,
        version: i16,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, PeerError> {
        let inner = &self.inner;
        let address = inner.address.clone();
        tokio::time::timeout(timeout, async {
            let _permit = inner.in_flight.acquire().await.expect("never closed");
            let connection = self.connection().await?;
            let correlation_id = inner.correlation_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            let header = RequestHeader::default()
                .with_request_api_key(api_key as i16)
                .with_request_api_version(version)
                .with_correlation_id(correlation_id)
                .with_client_id(Some(inner.client_id.clone()));
            let mut frame = BytesMut::with_capacity(body.len() + 64);
            frame.extend_from_slice(&[0; 4]);
            header
                .encode(&mut frame, api_key.request_header_version(version))
                .expect("request header encodes");
            frame.extend_from_slice(&body);
            let size = (frame.len() - 4) as i32;
            frame[..4].copy_from_slice(&size.to_be_bytes());
            let (tx, rx) = oneshot::channel();
            connection
                .waiters
                .lock()
                .expect("waiters")
                .insert(correlation_id, tx);
            // Removes the waiter however this call ends (answer, error, or the timeout
            // dropping this future), so a slow peer does not leave waiters behind.
            let _forget = ForgetWaiter {
                waiters: connection.waiters.clone(),
                correlation_id,
            };
            if connection.outbound.send(frame.freeze()).await.is_err() {
                return Err(PeerError::Disconnected(address.clone()));
            }
            let Ok(mut response) = rx.await else {
                return Err(PeerError::Disconnected(address.clone()));
            };
            let header =
                ResponseHeader::decode(&mut response, api_key.response_header_version(version))
                    .map_err(|e| PeerError::Malformed {
                        address: address.clone(),
                        reason: e.to_string(),
                    })?;
            assert_eq!(header.correlation_id, correlation_id, "waiter keyed by id");
            Ok(response)
        })
        .await
        .unwrap_or_else(|_| Err(PeerError::Timeout(inner.address.clone())))
    }

    /// The live connection, connecting (once, for all waiting callers) when there is none.
    async fn connection(&self) -> Result<Arc<Connection>, PeerError> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.is_alive()) {
            return Ok(connection.clone());
        }
        *slot = None;
        let address = self.inner.address.clone();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
            .await
            .map_err(|_| PeerError::Connect {
                address: address.clone(),
                reason: "timed out".into(),
            })?
            .map_err(|e| PeerError::Connect {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (outbound, mut frames) = mpsc::channel::<Bytes>(IN_FLIGHT_MAX);
        let waiters: Waiters = Arc::default();
        let connection = Arc::new(Connection {
            outbound,
            waiters: waiters.clone(),
        });
        // Writer: ends when the connection is dropped or a write fails; the reader then ends
        // on the closed socket.
        let writer_task = tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
            frames.close();
        });
        let reader_waiters = waiters.clone();
        let peer = address.clone();
        tokio::spawn(async move {
            loop {
                let mut size = [0u8; 4];
                if reader.read_exact(&mut size).await.is_err() {
                    break;
                }
                let size = i32::from_be_bytes(size);
                if size < 4 || size as usize > RESPONSE_SIZE_BYTES_MAX {
                    tracing::warn!(peer, size, "bad response frame size");
                    break;
                }
                let mut frame = vec![0u8; size as usize];
                if reader.read_exact(&mut frame).await.is_err() {
                    break;
                }
                let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let waiter = reader_waiters
                    .lock()
                    .expect("waiters")
                    .remove(&correlation_id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Bytes::from(frame));
                }
            }
            // Fail every waiter: their senders drop.
            reader_waiters.lock().expect("waiters").clear();
            writer_task.abort();
        });
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

    #[tokio::test]
    async fn connect_failure_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peer =
            PeerClient::with_timeout(format!("127.0.0.1:{port}"), "test", Duration::from_secs(1));
        let result: Result<ApiVersionsResponse, _> =
            peer.send(3, &ApiVersionsRequest::default()).await;
        assert!(result.is_err());
    }
}
