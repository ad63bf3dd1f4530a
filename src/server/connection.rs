//! One client connection: reads size-prefixed frames, hands each to dispatch, and writes the
//! responses in request order, sending file regions with sendfile(2).
//!
//! Requests are handled one at a time in arrival order (so produces to a partition keep the
//! client's order, as in Kafka), except those that may wait (Fetch long-polls), which run
//! concurrently; a FIFO of pending responses keeps replies in request order either way.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::node::Node;
use crate::protocol::{Chunk, ResponseFrame};

use crate::handlers::context::RequestContext;
use crate::handlers::Handled;

use super::dispatch;

/// Responses queued for writing per connection; reading pauses while it is full.
const PENDING_RESPONSES_MAX: usize = 64;
/// Largest read buffer growth step: a frame's buffer grows as its bytes arrive, so a peer
/// announcing a large frame and sending nothing holds no memory.
const READ_CHUNK_BYTES: usize = 64 * 1024;

enum Pending {
    Ready(ResponseFrame),
    Later(oneshot::Receiver<Option<ResponseFrame>>),
}

pub async fn serve(broker: Arc<Node>, stream: TcpStream, kind: super::ListenerKind) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(PENDING_RESPONSES_MAX);
    let writer_task = tokio::spawn(write_responses(writer, pending_rx));
    // The controller listener carries inter-node traffic (quorum RPCs, requests forwarded by
    // brokers, which authorized them): it is trusted, as Kafka's controller principals are
    // super users. Client listeners ask the node's authorizer.
    let authorizer = match kind {
        super::ListenerKind::Broker => broker.authorizer.clone(),
        super::ListenerKind::Controller => Arc::new(crate::security::AllowAll),
    };
    let context = Arc::new(RequestContext::new(
        peer,
        kind.listener_name(),
        crate::security::Principal::anonymous(),
        authorizer,
    ));
    if let Err(reason) = read_requests(&broker, &context, reader, pending_tx, kind).await {
        tracing::debug!(?peer, reason, "closing connection");
    }
    let _ = writer_task.await;
}

/// Reads one frame: 4-byte big-endian size, then the body. Ok(None) at a clean end of stream.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    size_bytes_max: usize,
) -> Result<Option<BytesMut>, String> {
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
    Ok(Some(frame))
}

async fn read_requests(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    mut reader: OwnedReadHalf,
    pending: mpsc::Sender<Pending>,
    kind: super::ListenerKind,
) -> Result<(), String> {
    let idle = Duration::from_millis(broker.config.connection_idle_ms_max);
    let mut shutdown = broker.shutdown.subscribe();
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, read_frame(&mut reader, broker.config.request_size_bytes_max)) => {
                frame.map_err(|_| "idle timeout".to_string())??
            }
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(frame) = frame else { return Ok(()) };
        match dispatch::handle(broker, context, kind, frame.freeze()).await? {
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

async fn send(pending: &mpsc::Sender<Pending>, item: Pending) -> Result<(), String> {
    pending
        .send(item)
        .await
        .map_err(|_| "writer closed".to_string())
}

async fn write_responses(mut writer: OwnedWriteHalf, mut pending: mpsc::Receiver<Pending>) {
    while let Some(item) = pending.recv().await {
        let response = match item {
            Pending::Ready(response) => response,
            Pending::Later(rx) => match rx.await {
                Ok(Some(response)) => response,
                // A deferred handler that failed closes the connection, as Kafka does on
                // a request it cannot answer.
                _ => return,
            },
        };
        if let Err(error) = write_frame(&mut writer, &response).await {
            tracing::debug!(%error, "write failed");
            return;
        }
    }
}

async fn write_frame(writer: &mut OwnedWriteHalf, response: &ResponseFrame) -> std::io::Result<()> {
    let size = response.size_bytes();
    assert!(size <= i32::MAX as u64, "response of {size} bytes");
    writer.write_all(&(size as i32).to_be_bytes()).await?;
    for chunk in &response.chunks {
        match chunk {
            Chunk::Bytes(bytes) => writer.write_all(bytes).await?,
            Chunk::File(slice) => send_file(writer, slice).await?,
        }
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
