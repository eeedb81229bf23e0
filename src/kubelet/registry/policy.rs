//! `imagePullPolicy` decisions, the per-image pull back-off, and the kubelet's event reasons,
//! messages and waiting reasons for pulls, as upstream words them. Pure: no clock reads.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::reference::Reference;

/// Event reasons and container waiting reasons.
pub const REASON_PULLING: &str = "Pulling";
pub const REASON_PULLED: &str = "Pulled";
pub const REASON_FAILED: &str = "Failed";
pub const REASON_BACK_OFF: &str = "BackOff";
pub const REASON_ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const REASON_IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
pub const REASON_ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub const REASON_INVALID_IMAGE_NAME: &str = "InvalidImageName";

const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A container's `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The API's value, or the defaulting rule when unset: `Always` for `:latest` or no tag
    /// (and no digest), else `IfNotPresent`.
    pub fn resolve(value: Option<&str>, image: &str) -> Self {
        match value {
            Some("Always") => Self::Always,
            Some("IfNotPresent") => Self::IfNotPresent,
            Some("Never") => Self::Never,
            _ => {
                let latest = match Reference::parse_normalized(image) {
                    Ok(r) => r.digest.is_none() && r.tag.as_deref().is_none_or(|t| t == "latest"),
                    Err(_) => true,
                };
                if latest {
                    Self::Always
                } else {
                    Self::IfNotPresent
                }
            }
        }
    }
}

/// What to do about an image before starting a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Pull it.
    Pull,
    /// Use the local image (event `Pulled`, [`already_present_message`]).
    UsePresent,
    /// Fail with `ErrImageNeverPull` and [`never_pull_message`].
    NeverPull,
}

/// The pull decision for a policy given whether the image is present locally.
pub fn decide(policy: PullPolicy, present: bool) -> Decision {
    match (policy, present) {
        (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => Decision::Pull,
        (_, true) => Decision::UsePresent,
        (PullPolicy::Never, false) => Decision::NeverPull,
    }
}

pub fn pulling_message(image: &str) -> String {
    format!("Pulling image {image:?}")
}

pub fn already_present_message(image: &str) -> String {
    format!("Container image {image:?} already present on machine")
}

pub fn never_pull_message(image: &str) -> String {
    format!("Container image {image:?} is not present with pull policy of Never")
}

/// `Successfully pulled image "x" in 1.2s (1.5s including waiting). Image size: N bytes.`
pub fn pulled_message(
    image: &str,
    pull: Duration,
    including_waiting: Duration,
    size: u64,
) -> String {
    format!(
        "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
        go_duration(pull),
        go_duration(including_waiting)
    )
}

pub fn failed_message(image: &str, err: &str) -> String {
    format!("Failed to pull image {image:?}: {err}")
}

pub fn back_off_message(image: &str) -> String {
    format!("Back-off pulling image {image:?}")
}

/// A duration as Go's `time.Duration.String` prints it after truncation to milliseconds
/// (`512ms`, `1.234s`, `2m3.5s`).
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, frac) = (rem / 1000, rem % 1000);
    let mut secs = format!("{s}");
    if frac > 0 {
        let f = format!("{frac:03}");
        secs.push('.');
        secs.push_str(f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// Per-key (pod UID + image, as the kubelet keys it) pull back-off: 10 s doubling to 300 s.
/// Entries idle for twice the maximum are forgotten, as client-go's `Backoff` does.
#[derive(Debug, Default)]
pub struct PullBackOff {
    entries: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

impl PullBackOff {
    /// The kubelet's key for a container's image pull.
    pub fn key(pod_uid: &str, image: &str) -> String {
        format!("{pod_uid}_{image}")
    }

    /// Whether pulls for `key` are held back at `now`.
    pub fn in_back_off(&self, key: &str, now: Instant) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| now.saturating_duration_since(e.last_update) < e.delay)
    }

    /// Records a failed pull at `now`: the first failure waits 10 s, each next one twice as long.
    pub fn record_failure(&mut self, key: &str, now: Instant) -> Duration {
        let entry = self.entries.entry(key.to_string()).or_insert(Entry {
            delay: Duration::ZERO,
            last_update: now,
        });
        if now.saturating_duration_since(entry.last_update) > BACKOFF_MAX * 2 {
            entry.delay = Duration::ZERO;
        }
        entry.delay = if entry.delay.is_zero() {
            BACKOFF_BASE
        } else {
            entry.delay.saturating_mul(2).min(BACKOFF_MAX)
        };
        entry.last_update = now;
        entry.delay
    }

    /// Forgets `key` after a successful pull.
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops entries idle for more than twice the maximum delay.
    pub fn gc(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_update) <= BACKOFF_MAX * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_and_decisions() {
        let defaults = [
            ("busybox", PullPolicy::Always),
            ("busybox:latest", PullPolicy::Always),
            ("busybox:1.36", PullPolicy::IfNotPresent),
            (
                "busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                PullPolicy::IfNotPresent,
            ),
        ];
        for (image, want) in defaults {
            assert_eq!(PullPolicy::resolve(None, image), want, "{image}");
        }
        assert_eq!(
            PullPolicy::resolve(Some("Never"), "busybox"),
            PullPolicy::Never
        );
        let table = [
            (PullPolicy::Always, true, Decision::Pull),
            (PullPolicy::Always, false, Decision::Pull),
            (PullPolicy::IfNotPresent, true, Decision::UsePresent),
            (PullPolicy::IfNotPresent, false, Decision::Pull),
            (PullPolicy::Never, true, Decision::UsePresent),
            (PullPolicy::Never, false, Decision::NeverPull),
        ];
        for (policy, present, want) in table {
            assert_eq!(decide(policy, present), want, "{policy:?} {present}");
        }
    }

    #[test]
    fn messages_match_upstream() {
        assert_eq!(pulling_message("busybox"), "Pulling image \"busybox\"");
        assert_eq!(
            pulled_message(
                "busybox",
                Duration::from_millis(1234),
                Duration::from_millis(1500),
                42
            ),
            "Successfully pulled image \"busybox\" in 1.234s (1.5s including waiting). Image size: 42 bytes."
        );
        assert_eq!(
            failed_message("x", "boom"),
            "Failed to pull image \"x\": boom"
        );
        assert_eq!(back_off_message("x"), "Back-off pulling image \"x\"");
        assert_eq!(
            never_pull_message("x"),
            "Container image \"x\" is not present with pull policy of Never"
        );
        let durations = [
            (0, "0s"),
            (512, "512ms"),
            (1000, "1s"),
            (123_450, "2m3.45s"),
            (3_723_000, "1h2m3s"),
        ];
        for (ms, want) in durations {
            assert_eq!(go_duration(Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn back_off_doubles_to_five_minutes() {
        let mut b = PullBackOff::default();
        let t0 = Instant::now();
        let key = PullBackOff::key("uid", "busybox");
        assert!(!b.in_back_off(&key, t0));
        let delays: Vec<u64> = (0..7)
            .map(|_| b.record_failure(&key, t0).as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert!(b.in_back_off(&key, t0 + Duration::from_secs(299)));
        assert!(!b.in_back_off(&key, t0 + Duration::from_secs(300)));
        // After a long quiet period the delay starts again from 10 s.
        assert_eq!(
            b.record_failure(&key, t0 + Duration::from_secs(601))
                .as_secs(),
            10
        );
        b.reset(&key);
        assert!(!b.in_back_off(&key, t0));
    }
}
