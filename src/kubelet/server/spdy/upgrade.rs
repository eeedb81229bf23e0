//! The HTTP/1.1 side of a SPDY/3.1 upgrade as upstream's `httpstream.Handshake` and
//! `spdy.ResponseUpgrader` do it: recognising the request, negotiating
//! `X-Stream-Protocol-Version` in the client's order of preference, and the 101 answer. It
//! never speaks SPDY itself; the upgraded connection goes to a `session::Session`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The header both sides name protocol versions in.
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// The header a refused negotiation lists the server's versions in.
pub const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";
/// The `Upgrade` token.
pub const SPDY_31: &str = "SPDY/3.1";

/// Whether the request asks for a SPDY/3.1 upgrade (`Connection: upgrade`, `Upgrade: SPDY/3.1`).
pub fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, SPDY_31)
}

/// The outcome of protocol negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiated {
    /// The client named no version (old clients): upstream falls back to the oldest protocol.
    Unspecified,
    Chosen(&'static str),
    /// None of the client's versions is supported; the answer is a 403.
    Refused {
        offered: Vec<String>,
    },
}

/// Picks the first version the client offers that `server` supports.
pub fn negotiate(headers: &HeaderMap, server: &[&'static str]) -> Negotiated {
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    if offered.is_empty() {
        return Negotiated::Unspecified;
    }
    offered
        .iter()
        .find_map(|name| server.iter().find(|s| **s == name.as_str()).copied())
        .map_or(Negotiated::Refused { offered }, Negotiated::Chosen)
}

/// The 403 answer to a failed negotiation, worded as upstream's.
pub fn refusal(offered: &[String], server: &[&'static str]) -> Response {
    let message = format!(
        "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
        offered.join(" "),
        server.join(" ")
    );
    let mut response = (StatusCode::FORBIDDEN, message).into_response();
    if let Ok(value) = HeaderValue::from_str(&server.join(", ")) {
        response.headers_mut().insert(ACCEPTED_HEADER, value);
    }
    response
}

/// The 400 answer to a streaming request that is neither SPDY nor WebSocket.
pub fn missing_upgrade() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "unable to upgrade: missing upgrade headers in request",
    )
        .into_response()
}

/// The 101 answer switching to SPDY/3.1 with the negotiated version.
pub fn switching_protocols(chosen: Option<&str>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(SPDY_31));
    if let Some(value) = chosen.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(PROTOCOL_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn negotiation_follows_the_clients_order() {
        let server = ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"];
        let cases: [(&[(&str, &str)], Negotiated); 4] = [
            (
                &[
                    (PROTOCOL_HEADER, "v5.channel.k8s.io"),
                    (PROTOCOL_HEADER, "v3.channel.k8s.io"),
                    (PROTOCOL_HEADER, "v4.channel.k8s.io"),
                ],
                Negotiated::Chosen("v3.channel.k8s.io"),
            ),
            (
                &[(PROTOCOL_HEADER, "v4.channel.k8s.io, channel.k8s.io")],
                Negotiated::Chosen("v4.channel.k8s.io"),
            ),
            (&[], Negotiated::Unspecified),
            (
                &[(PROTOCOL_HEADER, "portforward.k8s.io")],
                Negotiated::Refused {
                    offered: vec!["portforward.k8s.io".into()],
                },
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(negotiate(&headers(pairs), &server), want, "{pairs:?}");
        }
    }

    #[test]
    fn spdy_upgrade_needs_both_connection_and_upgrade_tokens() {
        let cases: [(&[(&str, &str)], bool); 4] = [
            (&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")], true),
            (
                &[
                    ("connection", "keep-alive, upgrade"),
                    ("upgrade", "spdy/3.1"),
                ],
                true,
            ),
            (
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                false,
            ),
            (&[("upgrade", "SPDY/3.1")], false),
        ];
        for (pairs, want) in cases {
            assert_eq!(is_spdy_upgrade(&headers(pairs)), want, "{pairs:?}");
        }
    }

    #[test]
    fn switching_protocols_names_the_chosen_version() {
        let response = switching_protocols(Some("v4.channel.k8s.io"));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()[PROTOCOL_HEADER], "v4.channel.k8s.io");
        assert_eq!(response.headers()[header::UPGRADE], "SPDY/3.1");
        let refused = refusal(&["x".into()], &["portforward.k8s.io"]);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(refused.headers()[ACCEPTED_HEADER], "portforward.k8s.io");
    }
}
