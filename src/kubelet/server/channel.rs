//! The Kubernetes WebSocket channel protocols (`v5.channel.k8s.io` … `channel.k8s.io`,
//! `base64.channel.k8s.io`) for exec, attach and port-forward: subprotocol negotiation, channel
//! framing of messages, the error channel's payload and resize messages. Pure: it never touches
//! sockets, so the same code serves the kubelet server and tests.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use serde::Deserialize;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: `[255, n]` says the peer will send no more on channel `n` (stdin half-close).
pub const CLOSE: u8 = 255;

/// A negotiated channel subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelProtocol {
    /// `v5.channel.k8s.io`: v4 plus the close channel.
    V5,
    /// `v4.channel.k8s.io`: the error channel carries a JSON `metav1.Status` with the exit code.
    V4,
    /// `v3.channel.k8s.io`: adds the resize channel.
    V3,
    /// `v2.channel.k8s.io`.
    V2,
    /// `channel.k8s.io`: binary messages, first byte the channel.
    V1,
    /// `v4.base64.channel.k8s.io`: v4 semantics, text messages, channel as an ASCII digit.
    V4Base64,
    /// `base64.channel.k8s.io`.
    Base64,
}

/// Exec/attach subprotocols in the order the server prefers them.
const EXEC_PROTOCOLS: [(ChannelProtocol, &str); 7] = [
    (ChannelProtocol::V5, "v5.channel.k8s.io"),
    (ChannelProtocol::V4, "v4.channel.k8s.io"),
    (ChannelProtocol::V4Base64, "v4.base64.channel.k8s.io"),
    (ChannelProtocol::V3, "v3.channel.k8s.io"),
    (ChannelProtocol::V2, "v2.channel.k8s.io"),
    (ChannelProtocol::V1, "channel.k8s.io"),
    (ChannelProtocol::Base64, "base64.channel.k8s.io"),
];

/// Port-forward subprotocols (the v4 name is what kubectl 1.31+ offers).
const PORT_FORWARD_PROTOCOLS: [(ChannelProtocol, &str); 4] = [
    (ChannelProtocol::V4, "v4.channel.k8s.io"),
    (ChannelProtocol::V4, "portforward.k8s.io"),
    (ChannelProtocol::V1, "channel.k8s.io"),
    (ChannelProtocol::Base64, "base64.channel.k8s.io"),
];

/// Which kind of endpoint is negotiating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ExecOrAttach,
    PortForward,
}

/// A message as it travels on the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Binary(Vec<u8>),
    Text(String),
}

/// One decoded inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelFrame {
    Data {
        channel: u8,
        data: Vec<u8>,
    },
    /// v5: the peer closed its side of `channel`.
    Close {
        channel: u8,
    },
}

/// Terminal size from the resize channel (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("empty websocket message")]
    Empty,
    #[error("invalid base64 channel message: {source}")]
    Base64 {
        #[source]
        source: base64::DecodeError,
    },
    #[error("invalid base64 channel number {byte}")]
    Base64Channel { byte: u8 },
    #[error("invalid resize message: {source}")]
    Resize {
        #[source]
        source: serde_json::Error,
    },
}

impl ChannelProtocol {
    /// Picks the subprotocol for a request from its `Sec-WebSocket-Protocol` values (each may
    /// hold a comma-separated list): the first the client offers that the endpoint supports,
    /// as upstream's wsstream does. `None` means the request named no supported protocol.
    pub fn negotiate<'a>(
        endpoint: Endpoint,
        offered: impl IntoIterator<Item = &'a str>,
    ) -> Option<(Self, &'static str)> {
        let supported: &[(Self, &str)] = match endpoint {
            Endpoint::ExecOrAttach => &EXEC_PROTOCOLS,
            Endpoint::PortForward => &PORT_FORWARD_PROTOCOLS,
        };
        offered
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .find_map(|name| supported.iter().find(|(_, n)| *n == name).copied())
    }

    fn is_base64(self) -> bool {
        matches!(self, Self::V4Base64 | Self::Base64)
    }

    /// Whether the error channel carries a JSON `Status` (v4 and later) rather than text.
    pub fn structured_errors(self) -> bool {
        matches!(self, Self::V5 | Self::V4 | Self::V4Base64)
    }

    /// Whether the close channel (255) exists.
    pub fn has_close_channel(self) -> bool {
        self == Self::V5
    }

    /// Frames `data` for `channel`.
    pub fn encode(self, channel: u8, data: &[u8]) -> WsMessage {
        if self.is_base64() {
            let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            text.push(char::from(b'0'.wrapping_add(channel)));
            STANDARD.encode_string(data, &mut text);
            WsMessage::Text(text)
        } else {
            let mut bytes = Vec::with_capacity(1 + data.len());
            bytes.push(channel);
            bytes.extend_from_slice(data);
            WsMessage::Binary(bytes)
        }
    }

    /// Splits an inbound message into its channel and payload.
    pub fn decode(self, message: &WsMessage) -> Result<ChannelFrame, ChannelError> {
        let (channel, data) = match message {
            WsMessage::Binary(bytes) => {
                let (&channel, rest) = bytes.split_first().ok_or(ChannelError::Empty)?;
                (channel, rest.to_vec())
            }
            WsMessage::Text(text) => {
                let (&digit, rest) = text.as_bytes().split_first().ok_or(ChannelError::Empty)?;
                if !digit.is_ascii_digit() {
                    return Err(ChannelError::Base64Channel { byte: digit });
                }
                let data = STANDARD
                    .decode(rest)
                    .map_err(|source| ChannelError::Base64 { source })?;
                (digit - b'0', data)
            }
        };
        if channel == CLOSE && self.has_close_channel() {
            let closed = data.first().copied().ok_or(ChannelError::Empty)?;
            return Ok(ChannelFrame::Close { channel: closed });
        }
        Ok(ChannelFrame::Data { channel, data })
    }
}

/// How an exec or attach ended, for the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    Exited { code: i32 },
    Failed { message: String },
}

/// The error-channel payload for `outcome`: a JSON `Status` for structured protocols (success
/// included, so the client knows the exit code), plain text otherwise; `None` when nothing is
/// to be sent (success on the text protocols).
pub fn error_payload(
    structured: bool,
    command: &[String],
    outcome: &ExecOutcome,
) -> Option<Vec<u8>> {
    if !structured {
        return match outcome {
            ExecOutcome::Exited { code: 0 } => None,
            ExecOutcome::Exited { code } => Some(
                format!("command terminated with non-zero exit code: exit status {code}")
                    .into_bytes(),
            ),
            ExecOutcome::Failed { message } => Some(message.clone().into_bytes()),
        };
    }
    let status = match outcome {
        ExecOutcome::Exited { code: 0 } => Status {
            status: Some("Success".into()),
            ..Status::default()
        },
        ExecOutcome::Exited { code } => Status {
            status: Some("Failure".into()),
            message: Some(format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            )),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some(code.to_string()),
                    ..StatusCause::default()
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        },
        ExecOutcome::Failed { message } => Status {
            status: Some("Failure".into()),
            message: Some(message.clone()),
            reason: Some("InternalError".into()),
            code: Some(500),
            ..Status::default()
        },
    };
    let mut value = serde_json::to_value(&status).ok()?;
    if let Some(object) = value.as_object_mut() {
        // Upstream always writes metadata, and clients decode it as a typed object.
        object.insert("metadata".into(), serde_json::json!({}));
    }
    serde_json::to_vec(&value).ok()
}

/// Parses a resize-channel payload.
pub fn parse_resize(data: &[u8]) -> Result<TerminalSize, ChannelError> {
    serde_json::from_slice(data).map_err(|source| ChannelError::Resize { source })
}

/// Port-forward over WebSocket: the i-th requested port uses data channel `2i` and error
/// channel `2i+1`; `None` past the 127th port (channels are one byte).
pub fn port_forward_channels(index: usize) -> Option<(u8, u8)> {
    let data = u8::try_from(index.checked_mul(2)?).ok()?;
    Some((data, data.checked_add(1)?))
}

/// The 2-byte little-endian port prefix the first message of each port-forward channel starts
/// with.
pub fn port_prefix(port: u16) -> [u8; 2] {
    port.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_supported_protocol() {
        let cases: [(Endpoint, &[&str], Option<&str>); 7] = [
            (
                Endpoint::ExecOrAttach,
                &["v5.channel.k8s.io", "v4.channel.k8s.io"],
                Some("v5.channel.k8s.io"),
            ),
            (
                Endpoint::ExecOrAttach,
                &["v4.channel.k8s.io,v3.channel.k8s.io"],
                Some("v4.channel.k8s.io"),
            ),
            (
                Endpoint::ExecOrAttach,
                &["bogus", " base64.channel.k8s.io"],
                Some("base64.channel.k8s.io"),
            ),
            (Endpoint::ExecOrAttach, &["portforward.k8s.io"], None),
            (
                Endpoint::PortForward,
                &["portforward.k8s.io"],
                Some("portforward.k8s.io"),
            ),
            (
                Endpoint::PortForward,
                &["v4.channel.k8s.io"],
                Some("v4.channel.k8s.io"),
            ),
            (Endpoint::PortForward, &[], None),
        ];
        for (endpoint, offered, want) in cases {
            let got = ChannelProtocol::negotiate(endpoint, offered.iter().copied());
            assert_eq!(got.map(|(_, name)| name), want, "{offered:?}");
        }
    }

    #[test]
    fn binary_and_base64_framing_round_trip() {
        let protocols = [
            ChannelProtocol::V5,
            ChannelProtocol::V4,
            ChannelProtocol::V1,
            ChannelProtocol::Base64,
            ChannelProtocol::V4Base64,
        ];
        for protocol in protocols {
            for (channel, data) in [(STDOUT, &b"hello\n"[..]), (STDERR, b""), (ERROR, b"{}")] {
                let message = protocol.encode(channel, data);
                let frame = protocol.decode(&message).unwrap();
                assert_eq!(
                    frame,
                    ChannelFrame::Data {
                        channel,
                        data: data.to_vec()
                    },
                    "{protocol:?}"
                );
            }
        }
    }

    #[test]
    fn wire_forms_are_upstreams() {
        assert_eq!(
            ChannelProtocol::V4.encode(STDOUT, b"hi"),
            WsMessage::Binary(b"\x01hi".to_vec())
        );
        assert_eq!(
            ChannelProtocol::Base64.encode(STDERR, b"hi"),
            WsMessage::Text("2aGk=".into())
        );
    }

    #[test]
    fn close_channel_exists_only_in_v5() {
        let message = WsMessage::Binary(vec![CLOSE, STDIN]);
        assert_eq!(
            ChannelProtocol::V5.decode(&message).unwrap(),
            ChannelFrame::Close { channel: STDIN }
        );
        assert_eq!(
            ChannelProtocol::V4.decode(&message).unwrap(),
            ChannelFrame::Data {
                channel: CLOSE,
                data: vec![STDIN]
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases = [
            (ChannelProtocol::V4, WsMessage::Binary(vec![])),
            (ChannelProtocol::Base64, WsMessage::Text(String::new())),
            (ChannelProtocol::Base64, WsMessage::Text("x".into())),
            (ChannelProtocol::Base64, WsMessage::Text("1!!".into())),
            (ChannelProtocol::V5, WsMessage::Binary(vec![CLOSE])),
        ];
        for (protocol, message) in cases {
            assert!(protocol.decode(&message).is_err(), "{message:?}");
        }
    }

    #[test]
    fn structured_error_payload_carries_the_exit_code() {
        let command = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let payload = error_payload(true, &command, &ExecOutcome::Exited { code: 3 }).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(value["status"], "Failure");
        assert_eq!(value["reason"], "NonZeroExitCode");
        assert_eq!(value["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(value["details"]["causes"][0]["message"], "3");
        assert_eq!(value["metadata"], serde_json::json!({}));

        let ok = error_payload(true, &command, &ExecOutcome::Exited { code: 0 }).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(value["status"], "Success");
    }

    #[test]
    fn text_error_payload_is_silent_on_success() {
        let cases = [
            (ExecOutcome::Exited { code: 0 }, None),
            (
                ExecOutcome::Exited { code: 2 },
                Some("command terminated with non-zero exit code: exit status 2"),
            ),
            (
                ExecOutcome::Failed {
                    message: "no such container".into(),
                },
                Some("no such container"),
            ),
        ];
        for (outcome, want) in cases {
            let got = error_payload(false, &[], &outcome);
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "{outcome:?}");
        }
    }

    #[test]
    fn resize_messages_parse() {
        assert_eq!(
            parse_resize(br#"{"Width":120,"Height":40}"#).unwrap(),
            TerminalSize {
                width: 120,
                height: 40
            }
        );
        assert!(parse_resize(b"{}").is_err());
    }

    #[test]
    fn port_forward_channels_pair_data_and_error() {
        assert_eq!(port_forward_channels(0), Some((0, 1)));
        assert_eq!(port_forward_channels(3), Some((6, 7)));
        assert_eq!(port_forward_channels(127), Some((254, 255)));
        assert_eq!(port_forward_channels(128), None);
        assert_eq!(port_prefix(8080), [0x90, 0x1f]);
    }
}
