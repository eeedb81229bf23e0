//! A SPDY/3.1 server connection over any byte stream (an upgraded HTTP/1.1 connection, or a
//! WebSocket tunnel): client-initiated streams are offered to the caller, who accepts (SYN_REPLY)
//! or refuses (RST_STREAM) each; accepted streams are plain duplex byte pipes whose shutdown
//! or drop sends FIN. The session answers PINGs, honours SETTINGS and WINDOW_UPDATE from peers
//! that do flow control, sends WINDOW_UPDATE as it hands data on, and ends with GOAWAY. It never
//! interprets stream headers: exec and port-forward semantics live above it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use super::{Frame, FrameCodec, HeaderBlock, RstStatus, Setting, SpdyError, StreamId};

/// SPDY/3.1's initial stream and connection window.
pub const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Largest DATA payload the session sends in one frame.
const MAX_DATA: usize = 16 * 1024;
/// Bytes buffered in each direction between the session and a stream's user.
const PIPE: usize = 64 * 1024;
/// Client bytes buffered for a stream whose user does not read before the stream is reset
/// (SPDY/3.1 peers keep within our 64 KiB window; spdystream ignores windows).
const MAX_BUFFERED: usize = 8 * 1024 * 1024;
/// How long `shutdown` waits for streams still sending before it resets them.
const DRAIN: Duration = Duration::from_secs(5);
/// Frames queued for the socket before senders wait.
const QUEUE: usize = 64;

/// What the writer task puts on the wire.
enum Out {
    Frame(Frame),
    /// GOAWAY, flush, close the write side, stop.
    Close {
        last_good: StreamId,
    },
}

/// Send-side flow control shared by the reader (which learns windows) and the stream pumps
/// (which spend them).
#[derive(Debug)]
struct Windows {
    /// Set once the peer shows it does flow control (SETTINGS with an initial window, or any
    /// WINDOW_UPDATE). moby/spdystream, which every kubectl uses, does neither and never
    /// grants window, so windows are only enforced for peers that do.
    enforce: bool,
    initial: i64,
    connection: i64,
    streams: HashMap<u32, i64>,
    /// Streams the peer reset: nothing more may be sent on them.
    reset: HashSet<u32>,
}

/// What a stream's sender may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Send(usize),
    Wait,
    Gone,
}

impl Windows {
    fn new() -> Self {
        Self {
            enforce: false,
            initial: DEFAULT_WINDOW,
            connection: DEFAULT_WINDOW,
            streams: HashMap::new(),
            reset: HashSet::new(),
        }
    }

    /// Takes up to `want` bytes of window for `id`.
    fn take(&mut self, id: u32, want: usize) -> Grant {
        if self.reset.contains(&id) {
            return Grant::Gone;
        }
        if !self.enforce {
            return Grant::Send(want);
        }
        let stream = self.streams.get(&id).copied().unwrap_or(0);
        let available = stream.min(self.connection);
        if available <= 0 {
            return Grant::Wait;
        }
        let n = usize::try_from(available).map_or(want, |a| a.min(want));
        let spent = i64::try_from(n).unwrap_or(i64::MAX);
        self.connection -= spent;
        if let Some(window) = self.streams.get_mut(&id) {
            *window -= spent;
        }
        Grant::Send(n)
    }

    /// Applies a WINDOW_UPDATE (stream 0 is the connection window).
    fn update(&mut self, id: u32, delta: u32) {
        self.enforce = true;
        if id == 0 {
            self.connection = self.connection.saturating_add(i64::from(delta));
        } else if let Some(window) = self.streams.get_mut(&id) {
            *window = window.saturating_add(i64::from(delta));
        }
    }

    /// Applies SETTINGS_INITIAL_WINDOW_SIZE: open streams move by the difference.
    fn set_initial(&mut self, value: u32) {
        self.enforce = true;
        let value = i64::from(value);
        let delta = value - self.initial;
        self.initial = value;
        for window in self.streams.values_mut() {
            *window = window.saturating_add(delta);
        }
    }
}

struct Shared {
    windows: Mutex<Windows>,
    window_opened: Notify,
    /// The highest stream id accepted, for GOAWAY.
    last_stream: AtomicU32,
}

impl Shared {
    fn windows(&self) -> MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stream the client opened, not yet answered.
pub struct IncomingStream {
    pub id: StreamId,
    pub headers: HeaderBlock,
    /// The client half-closed the stream in its SYN_STREAM.
    pub fin: bool,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    buffered: Arc<AtomicUsize>,
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
    tasks: mpsc::UnboundedSender<Pump>,
}

/// A stream's task: inbound ones end with the client's FIN, outbound ones with the user's.
enum Pump {
    Inbound(JoinHandle<()>),
    Outbound(JoinHandle<()>),
}

impl Pump {
    fn abort(&self) {
        match self {
            Self::Inbound(task) | Self::Outbound(task) => task.abort(),
        }
    }
}

/// What the reader hands a stream.
#[derive(Debug)]
enum Inbound {
    Data(Bytes),
    Fin,
    Reset,
}

impl IncomingStream {
    /// Answers SYN_REPLY and returns the stream as a byte pipe: reads yield the client's data
    /// until its FIN (or a reset); writes go out as DATA frames; shutdown or drop sends FIN.
    pub async fn accept(self) -> DuplexStream {
        let (user, session) = tokio::io::duplex(PIPE);
        let reply = Frame::SynReply {
            stream_id: self.id,
            fin: false,
            headers: HeaderBlock::new(),
        };
        let _closed = self.out.send(Out::Frame(reply)).await;
        let (from_user, to_user) = tokio::io::split(session);
        let inbound = tokio::spawn(deliver(
            self.id,
            self.inbound,
            self.buffered,
            to_user,
            self.out.clone(),
        ));
        let outbound = tokio::spawn(send(self.id, from_user, self.out, self.shared));
        let _closed = self.tasks.send(Pump::Inbound(inbound));
        let _closed = self.tasks.send(Pump::Outbound(outbound));
        user
    }

    /// Refuses the stream with RST_STREAM (upstream resets streams its handler rejects).
    pub async fn refuse(self, status: RstStatus) {
        self.shared.windows().streams.remove(&self.id.0);
        let reset = Frame::RstStream {
            stream_id: self.id,
            status,
        };
        let _closed = self.out.send(Out::Frame(reset)).await;
    }
}

/// Moves the client's data into the user's pipe, granting window back as it goes.
async fn deliver(
    id: StreamId,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    buffered: Arc<AtomicUsize>,
    mut to_user: tokio::io::WriteHalf<DuplexStream>,
    out: mpsc::Sender<Out>,
) {
    while let Some(item) = inbound.recv().await {
        match item {
            Inbound::Data(data) => {
                let written = to_user.write_all(&data).await;
                buffered.fetch_sub(data.len(), Ordering::Relaxed);
                if written.is_err() {
                    // The user dropped the stream; keep draining so the reader never blocks.
                    continue;
                }
                let Ok(delta) = u32::try_from(data.len()) else {
                    continue;
                };
                if delta == 0 {
                    continue;
                }
                for stream_id in [id, StreamId(0)] {
                    let update = Frame::WindowUpdate { stream_id, delta };
                    let _closed = out.send(Out::Frame(update)).await;
                }
            }
            Inbound::Fin | Inbound::Reset => break,
        }
    }
    let _closed = to_user.shutdown().await;
}

/// Sends what the user writes as DATA frames within the send window, then FIN.
async fn send(
    id: StreamId,
    mut from_user: ReadHalf<DuplexStream>,
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; MAX_DATA];
    loop {
        let n = match from_user.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut offset = 0;
        while offset < n {
            let granted = loop {
                let opened = shared.window_opened.notified();
                tokio::pin!(opened);
                opened.as_mut().enable();
                match shared.windows().take(id.0, n - offset) {
                    Grant::Send(granted) => break granted,
                    Grant::Gone => return,
                    Grant::Wait => {}
                }
                opened.await;
            };
            let Some(chunk) = buf.get(offset..offset + granted) else {
                return;
            };
            let frame = Frame::Data {
                stream_id: id,
                fin: false,
                data: Bytes::copy_from_slice(chunk),
            };
            if out.send(Out::Frame(frame)).await.is_err() {
                return;
            }
            offset += granted;
        }
    }
    let fin = Frame::Data {
        stream_id: id,
        fin: true,
        data: Bytes::new(),
    };
    let _closed = out.send(Out::Frame(fin)).await;
}

/// A SPDY/3.1 server session.
pub struct Session {
    incoming: mpsc::Receiver<IncomingStream>,
    out: mpsc::Sender<Out>,
    tasks: mpsc::UnboundedReceiver<Pump>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    reader_done: Option<oneshot::Receiver<()>>,
    shared: Arc<Shared>,
}

impl Session {
    /// Starts serving SPDY on `io` (the client speaks first).
    pub fn new<IO>(io: IO) -> Result<Self, SpdyError>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let decoder = FrameCodec::new()?;
        let encoder = FrameCodec::new()?;
        let (read, write) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel(QUEUE);
        let (incoming_tx, incoming) = mpsc::channel(16);
        let (tasks_tx, tasks) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            windows: Mutex::new(Windows::new()),
            window_opened: Notify::new(),
            last_stream: AtomicU32::new(0),
        });
        let writer = tokio::spawn(write_frames(write, encoder, out_rx));
        let reader = tokio::spawn(read_frames(
            read,
            decoder,
            ReaderContext {
                out: out.clone(),
                incoming: incoming_tx,
                shared: shared.clone(),
                tasks: tasks_tx,
            },
            done_tx,
        ));
        Ok(Self {
            incoming,
            out,
            tasks,
            reader,
            writer,
            reader_done: Some(done_rx),
            shared,
        })
    }

    /// The next stream the client opens; `None` once the connection is closed (EOF, error or
    /// GOAWAY from the client).
    pub async fn next_stream(&mut self) -> Option<IncomingStream> {
        self.incoming.recv().await
    }

    /// Ends the session: waits (a bounded time) for accepted streams to flush and send FIN,
    /// sends GOAWAY and closes the write side, then waits up to `linger` for the client to
    /// close its side, so no unread data makes the kernel reset the connection.
    pub async fn shutdown(mut self, linger: Duration) {
        self.incoming.close();
        let mut pumps = Vec::new();
        while let Ok(task) = self.tasks.try_recv() {
            pumps.push(task);
        }
        let drained = tokio::time::timeout(DRAIN, async {
            for pump in &mut pumps {
                if let Pump::Outbound(task) = pump {
                    let _finished = task.await;
                }
            }
        })
        .await;
        if drained.is_err() {
            debug!("spdy streams still open at shutdown; resetting them");
        }
        for pump in &pumps {
            pump.abort();
        }
        let last_good = StreamId(self.shared.last_stream.load(Ordering::Relaxed));
        let _closed = self.out.send(Out::Close { last_good }).await;
        if let Some(done) = self.reader_done.take() {
            let _ended = tokio::time::timeout(linger, done).await;
        }
        self.reader.abort();
        let _finished = (&mut self.writer).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        while let Ok(task) = self.tasks.try_recv() {
            task.abort();
        }
    }
}

async fn write_frames<W: AsyncWrite>(
    write: W,
    mut codec: FrameCodec,
    mut out: mpsc::Receiver<Out>,
) {
    tokio::pin!(write);
    let mut buf = BytesMut::new();
    while let Some(item) = out.recv().await {
        let (frame, close) = match item {
            Out::Frame(frame) => (frame, false),
            Out::Close { last_good } => (
                Frame::GoAway {
                    last_good_stream_id: last_good,
                    status: 0,
                },
                true,
            ),
        };
        if let Err(error) = codec.encode(&frame, &mut buf) {
            debug!(%error, "dropping a spdy frame that cannot be encoded");
            continue;
        }
        // Batch whatever else is already queued into one write.
        while !close && buf.len() < PIPE {
            match out.try_recv() {
                Ok(Out::Frame(frame)) => {
                    if let Err(error) = codec.encode(&frame, &mut buf) {
                        debug!(%error, "dropping a spdy frame that cannot be encoded");
                    }
                }
                Ok(Out::Close { last_good }) => {
                    let goaway = Frame::GoAway {
                        last_good_stream_id: last_good,
                        status: 0,
                    };
                    let _encoded = codec.encode(&goaway, &mut buf);
                    let _written = write.write_all(&buf).await;
                    let _flushed = write.shutdown().await;
                    return;
                }
                Err(_) => break,
            }
        }
        if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
            return;
        }
        buf.clear();
        if close {
            let _flushed = write.shutdown().await;
            return;
        }
    }
    let _flushed = write.shutdown().await;
}

/// The reader's end of a stream's inbound queue, with the bytes not yet handed to the user.
struct InboundTx {
    tx: mpsc::UnboundedSender<Inbound>,
    buffered: Arc<AtomicUsize>,
}

struct ReaderContext {
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<IncomingStream>,
    shared: Arc<Shared>,
    tasks: mpsc::UnboundedSender<Pump>,
}

/// Reads frames until EOF or a protocol error.
async fn read_frames<R: AsyncRead>(
    read: R,
    mut codec: FrameCodec,
    ctx: ReaderContext,
    done: oneshot::Sender<()>,
) {
    tokio::pin!(read);
    let mut buf = BytesMut::with_capacity(PIPE);
    let mut streams: HashMap<u32, InboundTx> = HashMap::new();
    let mut last = StreamId(0);
    let mut going_away = false;
    'read: loop {
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    debug!(%error, "spdy protocol error; closing the session");
                    break 'read;
                }
            };
            if !handle(&ctx, frame, &mut streams, &mut last, &mut going_away).await {
                break 'read;
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    for (_, stream) in streams.drain() {
        let _gone = stream.tx.send(Inbound::Fin);
    }
    let _gone = done.send(());
}

/// Handles one inbound frame; `false` ends the session.
async fn handle(
    ctx: &ReaderContext,
    frame: Frame,
    streams: &mut HashMap<u32, InboundTx>,
    last: &mut StreamId,
    going_away: &mut bool,
) -> bool {
    let send = |frame: Frame| async { ctx.out.send(Out::Frame(frame)).await.is_ok() };
    match frame {
        Frame::SynStream {
            stream_id,
            fin,
            headers,
            ..
        } => {
            // Clients open odd ids in increasing order (spdystream's checkStreamFrame).
            if stream_id.0 % 2 == 0 || stream_id <= *last || *going_away {
                let status = if streams.contains_key(&stream_id.0) {
                    RstStatus::STREAM_IN_USE
                } else {
                    RstStatus::PROTOCOL_ERROR
                };
                return send(Frame::RstStream { stream_id, status }).await;
            }
            *last = stream_id;
            ctx.shared.last_stream.store(stream_id.0, Ordering::Relaxed);
            let (tx, rx) = mpsc::unbounded_channel();
            let buffered = Arc::new(AtomicUsize::new(0));
            if fin {
                let _gone = tx.send(Inbound::Fin);
            } else {
                let inbound = InboundTx {
                    tx,
                    buffered: buffered.clone(),
                };
                streams.insert(stream_id.0, inbound);
            }
            {
                let mut windows = ctx.shared.windows();
                let initial = windows.initial;
                windows.streams.insert(stream_id.0, initial);
            }
            let stream = IncomingStream {
                id: stream_id,
                headers,
                fin,
                inbound: rx,
                buffered,
                out: ctx.out.clone(),
                shared: ctx.shared.clone(),
                tasks: ctx.tasks.clone(),
            };
            if ctx.incoming.send(stream).await.is_err() {
                streams.remove(&stream_id.0);
                let status = RstStatus::REFUSED_STREAM;
                return send(Frame::RstStream { stream_id, status }).await;
            }
            true
        }
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let Some(stream) = streams.get(&stream_id.0) else {
                return true;
            };
            let buffered = stream.buffered.fetch_add(data.len(), Ordering::Relaxed);
            if buffered.saturating_add(data.len()) > MAX_BUFFERED {
                let _gone = stream.tx.send(Inbound::Reset);
                streams.remove(&stream_id.0);
                ctx.shared.windows().reset.insert(stream_id.0);
                ctx.shared.window_opened.notify_waiters();
                let status = RstStatus::FLOW_CONTROL_ERROR;
                return send(Frame::RstStream { stream_id, status }).await;
            }
            if !data.is_empty() {
                let _gone = stream.tx.send(Inbound::Data(data));
            }
            if fin {
                let _gone = stream.tx.send(Inbound::Fin);
                streams.remove(&stream_id.0);
            }
            true
        }
        Frame::Headers { stream_id, fin, .. } => {
            if fin && let Some(stream) = streams.remove(&stream_id.0) {
                let _gone = stream.tx.send(Inbound::Fin);
            }
            true
        }
        Frame::RstStream { stream_id, .. } => {
            if let Some(stream) = streams.remove(&stream_id.0) {
                let _gone = stream.tx.send(Inbound::Reset);
            }
            ctx.shared.windows().reset.insert(stream_id.0);
            ctx.shared.window_opened.notify_waiters();
            true
        }
        Frame::Settings { entries, .. } => {
            let initial = entries
                .iter()
                .rev()
                .find(|s| s.id == Setting::INITIAL_WINDOW_SIZE)
                .map(|s| s.value);
            if let Some(value) = initial {
                ctx.shared.windows().set_initial(value);
                ctx.shared.window_opened.notify_waiters();
            }
            true
        }
        Frame::WindowUpdate { stream_id, delta } => {
            ctx.shared.windows().update(stream_id.0, delta);
            ctx.shared.window_opened.notify_waiters();
            true
        }
        Frame::Ping { id } => {
            // Client pings are odd; an even id would be the answer to our own (we send none).
            if id % 2 == 1 {
                return send(Frame::Ping { id }).await;
            }
            true
        }
        Frame::GoAway { .. } => {
            *going_away = true;
            // Streams already open keep going; no new ones will come.
            true
        }
        Frame::SynReply { stream_id, .. } => {
            // The server opens no streams, so a reply is a protocol error for that id.
            let status = RstStatus::PROTOCOL_ERROR;
            send(Frame::RstStream { stream_id, status }).await
        }
    }
}

#[cfg(test)]
mod tests;
