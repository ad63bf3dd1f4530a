//! One client connection: reads size-prefixed frames, hands each to dispatch, and writes the
//! responses in request order, sending file regions with sendfile(2) on plain TCP (over TLS
//! the record bytes must be encrypted in user space, so they are read and written).
//!
//! Requests are handled one at a time in arrival order (so produces to a partition keep the
//! client's order, as in Kafka), except those that may wait (Fetch long-polls), which run
//! concurrently; a FIFO of pending responses keeps replies in request order either way.
//! On a SASL listener the authenticator sees every frame first (`server::authenticator`).

use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::node::Node;
use crate::protocol::{Chunk, ResponseFrame};
use crate::security::listener::ListenerSecurity;
use crate::security::Principal;

use crate::handlers::context::RequestContext;
use crate::handlers::Handled;

use super::authenticator::{self, Authenticator, Verdict};
use super::dispatch;
use super::request_memory::RequestMemory;

/// Responses queued for writing per connection; reading pauses while it is full.
const PENDING_RESPONSES_MAX: usize = 64;
/// Largest read buffer growth step: a frame's buffer grows as its bytes arrive, so a peer
/// announcing a large frame and sending nothing holds no memory.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest a TLS handshake may take: a peer that stalls in it is cut off, holding nothing.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a segment read per write over TLS (the record bytes pass through user space).
const TLS_FILE_CHUNK_BYTES: usize = 64 * 1024;

enum Pending {
    Ready(ResponseFrame),
    Later(oneshot::Receiver<Option<ResponseFrame>>),
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The write side: plain TCP (sendfile for file regions) or TLS.
enum Writer {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
}

impl Writer {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Plain(writer) => writer.write_all(bytes).await,
            Writer::Tls(writer) => writer.write_all(bytes).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Writer::Plain(_) => Ok(()),
            Writer::Tls(writer) => writer.flush().await,
        }
    }
}

/// What the connection knows of the client's identity and how to learn it.
struct Identity {
    context: Arc<RequestContext>,
    authenticator: Option<Authenticator>,
}

/// The principal of a TLS connection: the client certificate's subject, else ANONYMOUS.
fn tls_principal(stream: &TlsStream) -> Principal {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|certificate| crate::security::tls::subject_name(certificate))
        .map(|subject| Principal {
            principal_type: "User".to_string(),
            name: subject,
        })
        .unwrap_or_else(Principal::anonymous)
}

pub async fn serve(
    broker: Arc<Node>,
    stream: TcpStream,
    kind: super::ListenerKind,
    security: Arc<ListenerSecurity>,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let listener = security.listener.name.clone();
    let (reader, writer, principal): (Box<dyn AsyncRead + Send + Unpin>, Writer, Principal) =
        match &security.tls {
            None => {
                let (reader, writer) = stream.into_split();
                (
                    Box::new(reader),
                    Writer::Plain(writer),
                    Principal::anonymous(),
                )
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
                let accepted =
                    tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                let stream = match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        crate::metrics::tls_handshake_failed(&listener);
                        tracing::debug!(?peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        crate::metrics::tls_handshake_failed(&listener);
                        tracing::debug!(?peer, "TLS handshake timed out");
                        return;
                    }
                };
                let principal = tls_principal(&stream);
                tracing::debug!(?peer, listener, %principal, "TLS handshake done");
                let (reader, writer) = tokio::io::split(stream);
                (Box::new(reader), Writer::Tls(writer), principal)
            }
        };
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(PENDING_RESPONSES_MAX);
    let writer_task = tokio::spawn(write_responses(writer, pending_rx));
    // The controller listener carries inter-node traffic (quorum RPCs, requests forwarded by
    // brokers, which authorized them): it is trusted, as Kafka's controller principals are
    // super users. Client listeners ask the node's authorizer.
    let authorizer = match kind {
        super::ListenerKind::Broker => broker.authorizer.clone(),
        super::ListenerKind::Controller => Arc::new(crate::security::AllowAll),
    };
    let mut context = RequestContext::authenticated(
        peer,
        &listener,
        security.listener.protocol,
        principal,
        authorizer,
    );
    context.quota_exempt = kind == super::ListenerKind::Controller;
    let identity = Identity {
        context: Arc::new(context),
        authenticator: security
            .sasl
            .clone()
            .map(|sasl| Authenticator::new(sasl, &listener)),
    };
    if let Err(reason) = read_requests(&broker, identity, reader, pending_tx, kind).await {
        tracing::debug!(?peer, reason, "closing connection");
    }
    let _ = writer_task.await;
}

/// A request's bytes and its room in the request memory pool (None: not counted).
type Frame = (BytesMut, Option<OwnedSemaphorePermit>);

/// Reads one frame: 4-byte big-endian size, then — once the request memory pool has room for
/// it — the body. Ok(None) at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    size_bytes_max: usize,
    memory: &RequestMemory,
) -> Result<Option<Frame>, String> {
    let mut size_bytes = [0u8; 4];
    match reader.read_exact(&mut size_bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let size = i32::from_be_bytes(size_bytes);
    if size < 0 || size as usize > size_bytes_max {
        return Err(format!("frame size {size} outside 0..={size_bytes_max}"));
    }
    let size = size as usize;
    let reserved = memory.reserve(size).await;
    let mut frame = BytesMut::new();
    while frame.len() < size {
        frame.reserve((size - frame.len()).min(READ_CHUNK_BYTES));
        let limit = size - frame.len();
        let read = (&mut *reader)
            .take(limit as u64)
            .read_buf(&mut frame)
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("end of stream inside a frame".into());
        }
    }
    Ok(Some((frame, reserved)))
}

async fn read_requests(
    broker: &Arc<Node>,
    mut identity: Identity,
    mut reader: Box<dyn AsyncRead + Send + Unpin>,
    pending: mpsc::Sender<Pending>,
    kind: super::ListenerKind,
) -> Result<(), String> {
    let idle = Duration::from_millis(broker.config.connection_idle_ms_max);
    let mut shutdown = broker.shutdown.subscribe();
    loop {
        // A client throttled by a quota is not read from until its throttle time passed
        // (Kafka mutes the channel, KIP-219): its requests wait in the socket, the task
        // waits asynchronously. Checked again after the read, for a mute set by a deferred
        // response completing while the read waited.
        if !wait_unmuted(&identity.context, &mut shutdown).await {
            return Ok(());
        }
        let size_bytes_max = match &identity.authenticator {
            Some(authenticator) => {
                authenticator.frame_size_bytes_max(broker.config.request_size_bytes_max)
            }
            None => broker.config.request_size_bytes_max,
        };
        let read = read_frame(&mut *reader, size_bytes_max, &broker.request_memory);
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, read) => {
                frame.map_err(|_| "idle timeout".to_string())??
            }
            _ = shutdown.changed() => return Ok(()),
        };
        let Some((frame, _reserved)) = frame else {
            return Ok(());
        };
        let frame = frame.freeze();
        let verdict = match &mut identity.authenticator {
            Some(authenticator) => authenticator.on_frame(&frame),
            None => match authenticator::api_key_of(&frame) {
                Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
                    if kind == super::ListenerKind::Broker =>
                {
                    authenticator::refuse_without_sasl(&frame)
                }
                _ => Verdict::Pass,
            },
        };
        match verdict {
            Verdict::Pass => {}
            Verdict::Answer(response) => {
                send(&pending, Pending::Ready(response)).await?;
                continue;
            }
            Verdict::Authenticated(response, principal) => {
                identity.context = Arc::new(identity.context.with_principal(principal));
                send(&pending, Pending::Ready(response)).await?;
                continue;
            }
            Verdict::AnswerAndClose(response, reason) => {
                send(&pending, Pending::Ready(response)).await?;
                return Err(reason);
            }
            Verdict::Close(reason) => return Err(reason),
        }
        if !wait_unmuted(&identity.context, &mut shutdown).await {
            return Ok(());
        }
        match dispatch::handle(broker, &identity.context, kind, frame).await? {
            Handled::Response(response) => send(&pending, Pending::Ready(response)).await?,
            Handled::NoResponse => {}
            Handled::Deferred(future) => {
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let _ = tx.send(future.await);
                });
                send(&pending, Pending::Later(rx)).await?;
            }
        }
    }
}

/// Waits out the connection's quota mute, if any. False when the node shuts down meanwhile.
async fn wait_unmuted(
    context: &RequestContext,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let Some(until) = context.mute().muted_until() else {
        return true;
    };
    tokio::select! {
        _ = tokio::time::sleep_until(until) => true,
        _ = shutdown.changed() => false,
    }
}

async fn send(pending: &mpsc::Sender<Pending>, item: Pending) -> Result<(), String> {
    pending
        .send(item)
        .await
        .map_err(|_| "writer closed".to_string())
}

async fn write_responses(mut writer: Writer, mut pending: mpsc::Receiver<Pending>) {
    while let Some(item) = pending.recv().await {
        let response = match item {
            Pending::Ready(response) => response,
            Pending::Later(rx) => match rx.await {
                Ok(Some(response)) => response,
                // A deferred handler that failed closes the connection, as Kafka does on
                // a request it cannot answer.
                _ => break,
            },
        };
        if let Err(error) = write_frame(&mut writer, &response).await {
            tracing::debug!(%error, "write failed");
            break;
        }
    }
    // TLS: send the close_notify, so the client reads a clean end after the last response.
    if let Writer::Tls(writer) = &mut writer {
        let _ = writer.shutdown().await;
    }
}

async fn write_frame(writer: &mut Writer, response: &ResponseFrame) -> std::io::Result<()> {
    let size = response.size_bytes();
    assert!(size <= i32::MAX as u64, "response of {size} bytes");
    writer.write_all(&(size as i32).to_be_bytes()).await?;
    for chunk in &response.chunks {
        match chunk {
            Chunk::Bytes(bytes) => writer.write_all(bytes).await?,
            Chunk::File(slice) => match writer {
                Writer::Plain(plain) => send_file(plain, slice).await?,
                Writer::Tls(_) => copy_file(writer, slice).await?,
            },
        }
    }
    writer.flush().await
}

/// Over TLS: reads the region in chunks and writes them through the TLS stream. The reads hit
/// the page cache for recently written segments (the same pages sendfile would send).
async fn copy_file(writer: &mut Writer, slice: &crate::replica::FileSlice) -> std::io::Result<()> {
    let mut buffer = vec![0u8; TLS_FILE_CHUNK_BYTES.min(slice.length_bytes as usize)];
    let mut offset = slice.position;
    let end = slice.position + slice.length_bytes;
    while offset < end {
        let count = ((end - offset) as usize).min(buffer.len());
        let read = slice.file.read_at(&mut buffer[..count], offset)?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment file shorter than expected",
            ));
        }
        writer.write_all(&buffer[..read]).await?;
        offset += read as u64;
    }
    Ok(())
}

/// sendfile(2) from the segment file to the socket: record bytes never enter user space.
async fn send_file(
    writer: &mut OwnedWriteHalf,
    slice: &crate::replica::FileSlice,
) -> std::io::Result<()> {
    let stream: &TcpStream = writer.as_ref();
    let mut offset = slice.position as i64;
    let end = (slice.position + slice.length_bytes) as i64;
    while offset < end {
        stream.writable().await?;
        let result = stream.try_io(tokio::io::Interest::WRITABLE, || {
            let count = (end - offset) as usize;
            nix::sys::sendfile::sendfile(
                stream.as_fd(),
                slice.file.as_ref(),
                Some(&mut offset),
                count,
            )
            .map_err(std::io::Error::from)
        });
        match result {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than expected",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
