//! `skiff certificate check|rotate`: an expiry table of the certificate files, and re-issuing every
//! leaf now (through the running server when it is up, otherwise at the next start, as k3s).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use skiff::auth::pki::renew::ROTATE_PATH;
use skiff::auth::pki::{CertSummary, summarize};
use skiff::cli::{CertificateAction, CertificateArgs, CheckOutput};

use crate::admin_api::{self, CallError};

/// Leaves expiring within this many seconds are shown as WARNING (the renewal window).
const WARN_WITHIN: i64 = 90 * 24 * 3600;

pub async fn run(args: CertificateArgs) -> anyhow::Result<()> {
    match args.action {
        CertificateAction::Check { output } => {
            let rows = check(&args.data_dir)?;
            print!("{}", render(&rows, output));
            Ok(())
        }
        CertificateAction::Rotate => rotate(&args.data_dir).await,
    }
}

/// One certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub file: String,
    pub summary: Option<CertSummary>,
    pub now: i64,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn cert_files(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let tls = data_dir.join("server").join("tls");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tls)
        .with_context(|| format!("reading {}", tls.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    Ok(files)
}

fn check(data_dir: &Path) -> anyhow::Result<Vec<Row>> {
    let now = unix_now();
    let mut rows = Vec::new();
    for path in cert_files(data_dir)? {
        let pem = std::fs::read_to_string(&path).unwrap_or_default();
        rows.push(Row {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            summary: summarize(&pem),
            now,
        });
    }
    Ok(rows)
}

fn status(s: &CertSummary, now: i64) -> &'static str {
    if now < s.not_before {
        "NOT YET VALID"
    } else if now >= s.not_after {
        "EXPIRED"
    } else if s.not_after - now <= WARN_WITHIN && !s.usages.iter().any(|u| u == "CA") {
        "WARNING"
    } else {
        "OK"
    }
}

/// `364d`, `23h`, `5m`, `-2d` (expired two days ago).
fn residual(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    if s >= 86_400 {
        format!("{sign}{}d", s / 86_400)
    } else if s >= 3_600 {
        format!("{sign}{}h", s / 3_600)
    } else {
        format!("{sign}{}m", s / 60)
    }
}

fn expires(not_after: i64) -> String {
    jiff::Timestamp::from_second(not_after)
        .map(|t| t.strftime("%b %d, %Y %H:%M UTC").to_string())
        .unwrap_or_else(|_| not_after.to_string())
}

fn render(rows: &[Row], output: CheckOutput) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| match &r.summary {
            Some(s) => [
                r.file.clone(),
                s.subject.clone(),
                s.usages.join(","),
                expires(s.not_after),
                residual(s.not_after - r.now),
                status(s, r.now).to_owned(),
            ],
            None => [
                r.file.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "UNREADABLE".into(),
            ],
        })
        .collect();
    match output {
        CheckOutput::Text => cells
            .iter()
            .map(|[file, subject, _, exp, rest, st]| {
                format!("{file}: {subject} expires {exp} (in {rest}): {st}\n")
            })
            .collect(),
        CheckOutput::Table => {
            let header = [
                "FILENAME",
                "SUBJECT",
                "USAGES",
                "EXPIRES",
                "RESIDUAL TIME",
                "STATUS",
            ];
            let mut widths = header.map(str::len);
            for row in &cells {
                for (w, c) in widths.iter_mut().zip(row.iter()) {
                    *w = (*w).max(c.len());
                }
            }
            let line = |cols: [&str; 6]| -> String {
                let mut s = String::new();
                for (i, (c, w)) in cols.iter().zip(widths.iter()).enumerate() {
                    if i + 1 == cols.len() {
                        s.push_str(c);
                    } else {
                        s.push_str(&format!("{c:<w$}  ", w = *w));
                    }
                }
                s.push('\n');
                s
            };
            let mut out = line(header);
            out.push_str(&line(
                header.map(|h| if h.is_empty() { "" } else { "--------" }),
            ));
            for row in &cells {
                out.push_str(&line([
                    &row[0], &row[1], &row[2], &row[3], &row[4], &row[5],
                ]));
            }
            out
        }
    }
}

async fn rotate(data_dir: &Path) -> anyhow::Result<()> {
    match admin_api::call(data_dir, http::Method::POST, ROTATE_PATH).await {
        Ok(answer) => {
            println!("certificates rotated on the running server: {answer}");
            println!(
                "clients keep working; the admin kubeconfigs were rewritten with the new certificate"
            );
            Ok(())
        }
        Err(CallError::Failed(e)) => Err(e),
        Err(CallError::Unreachable(_)) => rotate_offline(data_dir),
    }
}

/// With the server stopped: back up and remove the leaf certificates (keys are kept), so the
/// next start issues new ones from the same CAs.
fn rotate_offline(data_dir: &Path) -> anyhow::Result<()> {
    let tls = data_dir.join("server").join("tls");
    let backup = tls.join(format!("backup-{}", unix_now()));
    let mut moved = 0;
    for path in cert_files(data_dir)? {
        let pem = std::fs::read_to_string(&path).unwrap_or_default();
        let is_ca = summarize(&pem).is_some_and(|s| s.usages.iter().any(|u| u == "CA"));
        if is_ca {
            continue;
        }
        std::fs::create_dir_all(&backup)
            .with_context(|| format!("creating {}", backup.display()))?;
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, backup.join(name))
                .with_context(|| format!("backing up {}", path.display()))?;
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            moved += 1;
        }
    }
    println!(
        "the server is not running: {moved} leaf certificates moved to {}; they are re-issued when skiff server starts",
        backup.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(not_before: i64, not_after: i64, usages: &[&str]) -> CertSummary {
        CertSummary {
            subject: "CN=x".into(),
            usages: usages.iter().map(|u| (*u).to_owned()).collect(),
            not_before,
            not_after,
            serial: "01".into(),
        }
    }

    #[test]
    fn status_follows_the_validity_window() {
        let day = 86_400;
        let now = 1_000 * day;
        let cases = [
            (summary(now - day, now + 365 * day, &["ServerAuth"]), "OK"),
            (
                summary(now - day, now + 30 * day, &["ClientAuth"]),
                "WARNING",
            ),
            (summary(now - day, now + 30 * day, &["CA"]), "OK"),
            (
                summary(now - 2 * day, now - day, &["ServerAuth"]),
                "EXPIRED",
            ),
            (
                summary(now + day, now + 2 * day, &["ServerAuth"]),
                "NOT YET VALID",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(status(&s, now), want, "{s:?}");
        }
    }

    #[test]
    fn residual_time_uses_the_largest_unit() {
        for (secs, want) in [
            (364 * 86_400 + 5, "364d"),
            (23 * 3_600 + 59, "23h"),
            (300, "5m"),
            (-2 * 86_400, "-2d"),
        ] {
            assert_eq!(residual(secs), want);
        }
    }

    #[test]
    fn table_has_a_header_and_one_aligned_row_per_file() {
        let rows = vec![
            Row {
                file: "client-admin.crt".into(),
                summary: Some(summary(0, 86_400 * 400, &["ClientAuth"])),
                now: 0,
            },
            Row {
                file: "broken.crt".into(),
                summary: None,
                now: 0,
            },
        ];
        let text = render(&rows, CheckOutput::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("FILENAME"), "{text}");
        assert!(lines[0].ends_with("RESIDUAL TIME  STATUS"), "{text}");
        assert!(
            lines[2].contains("400d") && lines[2].ends_with("OK"),
            "{text}"
        );
        assert!(lines[3].ends_with("UNREADABLE"), "{text}");
        let col = lines[0].find("SUBJECT").unwrap();
        assert_eq!(lines[2].find("CN=x"), Some(col), "{text}");
    }
}
