//! The CRI container log format the kubelet reads and every Kubernetes log tool understands:
//! one line per chunk, `<RFC 3339 nano timestamp> <stdout|stderr> <P|F> <content>`, where `P`
//! marks a partial line (split at [`MAX_CHUNK`] bytes) and `F` the end of one. Pure encoding,
//! decoding and the selection `kubectl logs` options make (`--since`, `--tail`,
//! `--timestamps`, `--limit-bytes`).

use jiff::Timestamp;

/// Longest content of one log line; longer output lines are split into partial chunks.
pub const MAX_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One decoded log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: Timestamp,
    /// The timestamp exactly as written (kubectl's `--timestamps` prints it).
    pub time_text: &'a str,
    pub stream: Stream,
    pub partial: bool,
    /// The content without the trailing newline.
    pub content: &'a [u8],
}

/// Formats a timestamp as the CRI log does (nanoseconds, UTC, `Z`).
pub fn timestamp(t: Timestamp) -> String {
    format!("{t:.9}")
}

/// Appends the encoded line for one chunk of output to `out`.
pub fn encode(out: &mut Vec<u8>, time: &str, stream: Stream, partial: bool, content: &[u8]) {
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Decodes one line (without its newline); `None` for a line that is not in the format.
pub fn decode(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time_text = std::str::from_utf8(parts.next()?).ok()?;
    let time: Timestamp = time_text.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry {
        time,
        time_text,
        stream,
        partial,
        content: parts.next().unwrap_or_default(),
    })
}

/// What `kubectl logs` asks for (`PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Only the last N lines.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<usize>,
}

/// Renders the selected log of a file's contents as the API returns it: content of full lines
/// with their newline, partial chunks joined, optionally prefixed by the timestamp.
pub fn render(file: &[u8], sel: &Selection) -> Vec<u8> {
    let entries: Vec<Entry<'_>> = file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(decode)
        .filter(|e| sel.since.is_none_or(|s| e.time >= s))
        .collect();
    let start = sel
        .tail
        .map_or(0, |n| entries.len().saturating_sub(n.min(entries.len())));
    let mut out = Vec::new();
    let mut at_line_start = true;
    for e in entries.get(start..).unwrap_or_default() {
        if sel.timestamps && at_line_start {
            out.extend_from_slice(e.time_text.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(e.content);
        if !e.partial {
            out.push(b'\n');
        }
        at_line_start = !e.partial;
        if let Some(limit) = sel.limit_bytes
            && out.len() >= limit
        {
            out.truncate(limit);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, stream: Stream, partial: bool, content: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode(&mut v, time, stream, partial, content.as_bytes());
        v
    }

    #[test]
    fn lines_round_trip() {
        let t = "2026-11-22T10:00:00.123456789Z";
        let encoded = line(t, Stream::Stderr, true, "half of it");
        assert_eq!(
            String::from_utf8_lossy(&encoded),
            "2026-11-22T10:00:00.123456789Z stderr P half of it\n"
        );
        let e = decode(encoded.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert!(e.partial);
        assert_eq!(e.content, b"half of it");
        assert_eq!(e.time_text, t);
        assert_eq!(decode(b"2026-11-22T10:00:00Z stdout F "), {
            Some(Entry {
                time: "2026-11-22T10:00:00Z".parse().unwrap(),
                time_text: "2026-11-22T10:00:00Z",
                stream: Stream::Stdout,
                partial: false,
                content: b"",
            })
        });
        for bad in [
            &b"garbage"[..],
            b"2026-11-22T10:00:00Z stdin F x",
            b"2026-11-22T10:00:00Z stdout X x",
        ] {
            assert_eq!(decode(bad), None);
        }
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let t: Timestamp = "2026-11-22T10:00:00.5Z".parse().unwrap();
        assert_eq!(timestamp(t), "2026-11-22T10:00:00.500000000Z");
    }

    fn file() -> Vec<u8> {
        [
            line("2026-11-22T10:00:01Z", Stream::Stdout, false, "one"),
            line("2026-11-22T10:00:02Z", Stream::Stderr, true, "tw"),
            line("2026-11-22T10:00:02Z", Stream::Stderr, false, "o"),
            line("2026-11-22T10:00:03Z", Stream::Stdout, false, "three"),
        ]
        .concat()
    }

    #[test]
    fn selections_apply_as_kubectl_logs_options() {
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let cases = [
            (Selection::default(), "one\ntwo\nthree\n"),
            (
                Selection {
                    tail: Some(1),
                    ..Default::default()
                },
                "three\n",
            ),
            (
                Selection {
                    since: at("2026-11-22T10:00:02Z"),
                    ..Default::default()
                },
                "two\nthree\n",
            ),
            (
                Selection {
                    timestamps: true,
                    tail: Some(3),
                    ..Default::default()
                },
                "2026-11-22T10:00:02Z two\n2026-11-22T10:00:03Z three\n",
            ),
            (
                Selection {
                    limit_bytes: Some(5),
                    ..Default::default()
                },
                "one\nt",
            ),
            (
                Selection {
                    tail: Some(0),
                    ..Default::default()
                },
                "",
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&render(&file(), &sel)),
                want,
                "{sel:?}"
            );
        }
    }
}
