//! Query strings of the kubelet's streaming paths: exec/attach stream options (repeated
//! `command`), `/containerLogs` options and port-forward ports. Booleans accept `1` (what the
//! API server sends the kubelet) and `true` (what kubectl sends the API server).

use super::backend::LogOptions;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid value {value:?} for query parameter {name}")]
    Invalid { name: &'static str, value: String },
    #[error("you must specify at least one of stdin, stdout, stderr")]
    NoStreams,
    #[error("stdout and stderr cannot both be requested with tty (stderr is merged)")]
    TtyWithStderr,
}

/// Options of an exec or attach request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn flag(name: &'static str, value: &str) -> Result<bool, QueryError> {
    match value {
        "1" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "false" | "False" | "FALSE" | "" => Ok(false),
        _ => Err(QueryError::Invalid {
            name,
            value: value.to_owned(),
        }),
    }
}

fn number(name: &'static str, value: &str) -> Result<i64, QueryError> {
    value.parse().map_err(|_| QueryError::Invalid {
        name,
        value: value.to_owned(),
    })
}

impl StreamQuery {
    /// Parses exec/attach options; upstream's kubelet refuses requests without any stream.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut out = Self::default();
        for (name, value) in pairs(query) {
            match name.as_str() {
                "command" => out.command.push(value),
                "input" | "stdin" => out.stdin = flag("stdin", &value)?,
                "output" | "stdout" => out.stdout = flag("stdout", &value)?,
                "error" | "stderr" => out.stderr = flag("stderr", &value)?,
                "tty" => out.tty = flag("tty", &value)?,
                _ => {}
            }
        }
        if !(out.stdin || out.stdout || out.stderr) {
            return Err(QueryError::NoStreams);
        }
        if out.tty && out.stderr {
            // As upstream: a terminal merges stderr into stdout.
            out.stderr = false;
        }
        Ok(out)
    }
}

/// Parses `/containerLogs` options.
pub fn log_options(query: &str) -> Result<LogOptions, QueryError> {
    let mut out = LogOptions::default();
    for (name, value) in pairs(query) {
        match name.as_str() {
            "follow" => out.follow = flag("follow", &value)?,
            "previous" => out.previous = flag("previous", &value)?,
            "timestamps" => out.timestamps = flag("timestamps", &value)?,
            "sinceSeconds" => out.since_seconds = Some(number("sinceSeconds", &value)?),
            "tailLines" => out.tail_lines = Some(number("tailLines", &value)?),
            "limitBytes" => out.limit_bytes = Some(number("limitBytes", &value)?),
            "sinceTime" => {
                let time = value.parse().map_err(|_| QueryError::Invalid {
                    name: "sinceTime",
                    value: value.clone(),
                })?;
                out.since_time = Some(time);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The `port` values of a port-forward request (repeated or comma-separated).
pub fn ports(query: &str) -> Result<Vec<u16>, QueryError> {
    let mut out = Vec::new();
    for (name, value) in pairs(query) {
        if name != "port" {
            continue;
        }
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port = part
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| QueryError::Invalid {
                    name: "port",
                    value: part.to_owned(),
                })?;
            out.push(port);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_query_collects_repeated_commands_and_flags() {
        let q =
            StreamQuery::parse("command=sh&command=-c&command=echo%20hi&stdin=1&stdout=true&tty=0")
                .unwrap();
        assert_eq!(q.command, ["sh", "-c", "echo hi"]);
        assert!(q.stdin && q.stdout && !q.stderr && !q.tty);
    }

    #[test]
    fn exec_query_without_streams_is_refused() {
        assert!(matches!(
            StreamQuery::parse("command=ls"),
            Err(QueryError::NoStreams)
        ));
        assert!(StreamQuery::parse("command=ls&stdout=maybe").is_err());
    }

    #[test]
    fn tty_merges_stderr() {
        let q = StreamQuery::parse("stdout=1&stderr=1&tty=1").unwrap();
        assert!(q.stdout && !q.stderr && q.tty);
    }

    #[test]
    fn log_options_parse_every_field() {
        let cases = [
            ("", LogOptions::default()),
            (
                "follow=true&tailLines=10&limitBytes=500&timestamps=1&previous=false&sinceSeconds=60",
                LogOptions {
                    follow: true,
                    timestamps: true,
                    tail_lines: Some(10),
                    limit_bytes: Some(500),
                    since_seconds: Some(60),
                    ..LogOptions::default()
                },
            ),
            (
                "sinceTime=2026-01-02T03:04:05Z",
                LogOptions {
                    since_time: Some("2026-01-02T03:04:05Z".parse().unwrap()),
                    ..LogOptions::default()
                },
            ),
        ];
        for (query, want) in cases {
            assert_eq!(log_options(query).unwrap(), want, "{query}");
        }
        assert!(log_options("tailLines=x").is_err());
        assert!(log_options("sinceTime=yesterday").is_err());
    }

    #[test]
    fn ports_accept_repeats_and_commas() {
        assert_eq!(ports("port=80&port=8080,9090").unwrap(), [80, 8080, 9090]);
        assert_eq!(ports("").unwrap(), Vec::<u16>::new());
        assert!(ports("port=0").is_err());
        assert!(ports("port=70000").is_err());
    }
}
