//! Table-driven frame sequences against a live session: a test client speaks frames on one
//! end of a pipe, the session serves the other, and each script interleaves what the client
//! sends, what the server side does with its streams, and the frames the client must see.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

const WAIT: Duration = Duration::from_secs(5);

/// One step of a script.
enum Step {
    /// The client sends a frame.
    Send(Frame),
    /// The client must receive exactly this frame next.
    Expect(Frame),
    /// The server takes the next incoming stream and accepts it (streams are numbered in
    /// acceptance order from 0).
    Accept,
    /// The server refuses the next incoming stream.
    Refuse,
    /// The server writes on stream n.
    Write(usize, &'static [u8]),
    /// The server half-closes stream n.
    Finish(usize),
    /// The server reads stream n to EOF and gets exactly these bytes.
    ReadToEnd(usize, &'static [u8]),
    /// The client receives nothing for a moment.
    Quiet,
}

fn syn(id: u32, kind: &str) -> Frame {
    Frame::SynStream {
        stream_id: StreamId(id),
        associated_to: StreamId(0),
        priority: 0,
        fin: false,
        unidirectional: false,
        headers: HeaderBlock::new().with("streamtype", kind),
    }
}

fn reply(id: u32) -> Frame {
    Frame::SynReply {
        stream_id: StreamId(id),
        fin: false,
        headers: HeaderBlock::new(),
    }
}

fn data(id: u32, bytes: &'static [u8], fin: bool) -> Frame {
    Frame::Data {
        stream_id: StreamId(id),
        fin,
        data: Bytes::from_static(bytes),
    }
}

fn window(id: u32, delta: u32) -> Frame {
    Frame::WindowUpdate {
        stream_id: StreamId(id),
        delta,
    }
}

fn rst(id: u32, status: RstStatus) -> Frame {
    Frame::RstStream {
        stream_id: StreamId(id),
        status,
    }
}

fn initial_window(value: u32) -> Frame {
    Frame::Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: Setting::INITIAL_WINDOW_SIZE,
            value,
        }],
    }
}

struct Client {
    io: DuplexStream,
    encoder: FrameCodec,
    decoder: FrameCodec,
    buf: BytesMut,
}

impl Client {
    async fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        self.encoder.encode(frame, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` at EOF or after `wait`.
    async fn recv(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(frame);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

fn client_and_session() -> (Client, Session) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let session = Session::new(server).unwrap();
    let client = Client {
        io: client,
        encoder: FrameCodec::new().unwrap(),
        decoder: FrameCodec::new().unwrap(),
        buf: BytesMut::new(),
    };
    (client, session)
}

async fn run(name: &str, script: Vec<Step>) -> (Client, Session) {
    let (mut client, mut session) = client_and_session();
    let mut streams: Vec<DuplexStream> = Vec::new();
    for (index, step) in script.into_iter().enumerate() {
        let at = format!("{name}: step {index}");
        match step {
            Step::Send(frame) => client.send(&frame).await,
            Step::Expect(want) => {
                let got = client.recv(WAIT).await;
                assert_eq!(got.as_ref(), Some(&want), "{at}");
            }
            Step::Accept => {
                let incoming = tokio::time::timeout(WAIT, session.next_stream())
                    .await
                    .unwrap_or_else(|_| panic!("{at}: no stream"))
                    .unwrap_or_else(|| panic!("{at}: session closed"));
                streams.push(incoming.accept().await);
            }
            Step::Refuse => {
                let incoming = tokio::time::timeout(WAIT, session.next_stream())
                    .await
                    .unwrap_or_else(|_| panic!("{at}: no stream"))
                    .unwrap_or_else(|| panic!("{at}: session closed"));
                incoming.refuse(RstStatus::CANCEL).await;
            }
            Step::Write(n, bytes) => streams[n].write_all(bytes).await.unwrap(),
            Step::Finish(n) => streams[n].shutdown().await.unwrap(),
            Step::ReadToEnd(n, want) => {
                let mut got = Vec::new();
                tokio::time::timeout(WAIT, streams[n].read_to_end(&mut got))
                    .await
                    .unwrap_or_else(|_| panic!("{at}: no EOF"))
                    .unwrap();
                assert_eq!(got, want, "{at}");
            }
            Step::Quiet => {
                let got = client.recv(Duration::from_millis(200)).await;
                assert_eq!(got, None, "{at}");
            }
        }
    }
    (client, session)
}

#[tokio::test]
async fn frame_sequences_follow_spdy_3_1() {
    use Step::*;
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "reply precedes data, data precedes fin",
            vec![
                Send(syn(1, "stdout")),
                Accept,
                Expect(reply(1)),
                Write(0, b"hi"),
                Expect(data(1, b"hi", false)),
                Finish(0),
                Expect(data(1, b"", true)),
            ],
        ),
        (
            "client data is delivered, granted back and ends at fin",
            vec![
                Send(syn(1, "stdin")),
                Accept,
                Expect(reply(1)),
                Send(data(1, b"abc", false)),
                Expect(window(1, 3)),
                Expect(window(0, 3)),
                Send(data(1, b"", true)),
                ReadToEnd(0, b"abc"),
                Quiet,
            ],
        ),
        (
            "data sent before the server accepts is kept",
            vec![
                Send(syn(1, "stdin")),
                Send(data(1, b"early", true)),
                Accept,
                Expect(reply(1)),
                ReadToEnd(0, b"early"),
            ],
        ),
        (
            "a window from settings limits sending until updates",
            vec![
                Send(initial_window(4)),
                Send(syn(1, "stdout")),
                Accept,
                Expect(reply(1)),
                Write(0, b"abcdefgh"),
                Expect(data(1, b"abcd", false)),
                Quiet,
                Send(window(1, 2)),
                Expect(data(1, b"ef", false)),
                Send(window(1, 10)),
                Expect(data(1, b"gh", false)),
            ],
        ),
        (
            "the connection window limits every stream",
            vec![
                Send(syn(1, "stdout")),
                Accept,
                Expect(reply(1)),
                // A window update shows flow control; the stream still has 64 KiB, the
                // connection only what the frames below leave.
                Send(window(1, 0)),
                Write(0, &[7u8; 16 * 1024]),
                Expect(data(1, &[7u8; 16 * 1024], false)),
                Write(0, &[7u8; 16 * 1024]),
                Expect(data(1, &[7u8; 16 * 1024], false)),
                Write(0, &[7u8; 16 * 1024]),
                Expect(data(1, &[7u8; 16 * 1024], false)),
                Write(0, &[7u8; 16 * 1024]),
                Expect(data(1, &[7u8; 16 * 1024], false)),
                Write(0, b"z"),
                Quiet,
                Send(window(1, 10)),
                Quiet,
                Send(window(0, 1)),
                Expect(data(1, b"z", false)),
            ],
        ),
        (
            "pings from the client are answered, others ignored",
            vec![
                Send(Frame::Ping { id: 1 }),
                Expect(Frame::Ping { id: 1 }),
                Send(Frame::Ping { id: 2 }),
                Quiet,
            ],
        ),
        (
            "even or reused stream ids are protocol errors",
            vec![
                Send(syn(2, "stdout")),
                Expect(rst(2, RstStatus::PROTOCOL_ERROR)),
                Send(syn(3, "stdout")),
                Accept,
                Expect(reply(3)),
                Send(syn(3, "stdout")),
                Expect(rst(3, RstStatus::STREAM_IN_USE)),
                Send(syn(1, "stdout")),
                Expect(rst(1, RstStatus::PROTOCOL_ERROR)),
            ],
        ),
        (
            "refused streams are reset",
            vec![
                Send(syn(1, "bogus")),
                Refuse,
                Expect(rst(1, RstStatus::CANCEL)),
            ],
        ),
        (
            "a client reset ends the stream without fin",
            vec![
                Send(syn(1, "data")),
                Accept,
                Expect(reply(1)),
                Send(rst(1, RstStatus::CANCEL)),
                ReadToEnd(0, b""),
                Quiet,
            ],
        ),
    ];
    for (name, script) in cases {
        run(name, script).await;
    }
}

#[tokio::test]
async fn without_flow_control_signals_everything_is_sent() {
    // moby/spdystream never sends SETTINGS or WINDOW_UPDATE: a 64 KiB window must not stall it.
    let (mut client, mut session) = client_and_session();
    client.send(&syn(1, "stdout")).await;
    let mut stream = session.next_stream().await.unwrap().accept().await;
    let payload = vec![5u8; 200 * 1024];
    let writer = tokio::spawn(async move {
        stream.write_all(&payload).await.unwrap();
        stream.shutdown().await.unwrap();
        stream
    });
    let mut received = 0;
    loop {
        match client.recv(WAIT).await.unwrap() {
            Frame::SynReply { .. } => {}
            Frame::Data { data, fin, .. } => {
                received += data.len();
                if fin {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, 200 * 1024);
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn shutdown_flushes_streams_then_sends_goaway() {
    let (mut client, mut session) = client_and_session();
    client.send(&syn(1, "error")).await;
    let mut stream = session.next_stream().await.unwrap().accept().await;
    stream.write_all(b"status").await.unwrap();
    drop(stream);
    let shutdown = tokio::spawn(session.shutdown(Duration::from_secs(5)));
    let mut frames = Vec::new();
    while let Some(frame) = client.recv(WAIT).await {
        frames.push(frame);
    }
    assert_eq!(
        frames,
        vec![
            reply(1),
            data(1, b"status", false),
            data(1, b"", true),
            Frame::GoAway {
                last_good_stream_id: StreamId(1),
                status: 0
            },
        ]
    );
    drop(client);
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
}

#[tokio::test]
async fn client_eof_ends_the_stream_list_and_open_streams() {
    let (mut client, mut session) = client_and_session();
    client.send(&syn(1, "stdin")).await;
    let mut stream = session.next_stream().await.unwrap().accept().await;
    drop(client);
    assert!(session.next_stream().await.is_none());
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_stream_whose_user_never_reads_is_reset_past_the_buffer_limit() {
    let (mut client, mut session) = client_and_session();
    client.send(&syn(1, "stdin")).await;
    let _unread = session.next_stream().await.unwrap().accept().await;
    assert_eq!(client.recv(WAIT).await, Some(reply(1)));
    let chunk = Bytes::from(vec![1u8; 1 << 20]);
    let sender = tokio::spawn(async move {
        for _ in 0..12 {
            let frame = Frame::Data {
                stream_id: StreamId(1),
                fin: false,
                data: chunk.clone(),
            };
            client.send(&frame).await;
        }
        client
    });
    let mut client = sender.await.unwrap();
    loop {
        match client.recv(WAIT).await {
            Some(Frame::WindowUpdate { .. }) => continue,
            other => {
                assert_eq!(other, Some(rst(1, RstStatus::FLOW_CONTROL_ERROR)));
                break;
            }
        }
    }
}
