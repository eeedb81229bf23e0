//! Image garbage collection as upstream's image GC manager: every five minutes, when the image
//! file system (containerd's root) is above the high threshold, delete unused images, least
//! recently used first, until it is under the low threshold. Never deletes pinned (imported)
//! images nor images any container uses. The selection is pure; deletion is behind
//! [`ImageStore`].

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::kubelet::runtime::import::{LABEL_PINNED, image_size};
use crate::kubelet::runtime::{ClientError, RuntimeClient};

use super::Shared;

/// How often usage is checked (upstream's `ImageGCPeriod`).
pub const PERIOD: Duration = Duration::from_secs(300);

/// A failed collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("listing images and containers: {source}")]
    List { source: Box<ClientError> },
    #[error("deleting image {name}: {source}")]
    Delete {
        name: String,
        source: Box<ClientError>,
    },
    #[error(
        "failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free."
    )]
    NotEnough { wanted: u64, freed: u64 },
}

/// The thresholds, in percent of the image file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Collection starts at or above this usage (upstream default 85).
    pub high: u8,
    /// Collection frees down to this usage (upstream default 80).
    pub low: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { high: 85, low: 80 }
    }
}

/// The image file system's size and free space, from `statvfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsUsage {
    pub capacity: u64,
    pub available: u64,
}

/// One image (all records sharing a target) as GC sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Record names; all are deleted together.
    pub names: Vec<String>,
    pub size: u64,
    pub pinned: bool,
    pub in_use: bool,
    /// When a container last used it, else when it was first seen.
    pub last_used: SystemTime,
}

/// Bytes to free for `usage` to fall to the low threshold; `None` below the high threshold
/// (upstream: usage percent is `100 - available*100/capacity`).
pub fn bytes_to_free(usage: FsUsage, t: Thresholds) -> Option<u64> {
    if usage.capacity == 0 {
        return None;
    }
    let free_pct = u128::from(usage.available) * 100 / u128::from(usage.capacity);
    let used_pct = 100u128.saturating_sub(free_pct);
    if used_pct < u128::from(t.high) {
        return None;
    }
    let keep_free =
        u128::from(usage.capacity) * u128::from(100u8.saturating_sub(t.low.min(100))) / 100;
    let want = keep_free.saturating_sub(u128::from(usage.available));
    Some(u64::try_from(want).unwrap_or(u64::MAX))
}

/// The images to delete to free `want` bytes: unpinned, unused, least recently used first,
/// stopping once enough is selected. Returns them and the bytes they free.
pub fn select(candidates: &[Candidate], want: u64) -> (Vec<&Candidate>, u64) {
    let mut eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !c.pinned && !c.in_use)
        .collect();
    eligible.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.names.cmp(&b.names)));
    let mut out = Vec::new();
    let mut freed = 0u64;
    for c in eligible {
        if freed >= want {
            break;
        }
        freed = freed.saturating_add(c.size);
        out.push(c);
    }
    (out, freed)
}

/// Where images are listed and deleted.
pub trait ImageStore: Send + Sync {
    fn candidates(&self) -> impl Future<Output = Result<Vec<Candidate>, GcError>> + Send;
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), GcError>> + Send;
}

/// One collection: frees space when `usage` is over `t.high`; returns the bytes freed.
pub async fn collect<S: ImageStore>(
    store: &S,
    usage: FsUsage,
    t: Thresholds,
) -> Result<u64, GcError> {
    let Some(want) = bytes_to_free(usage, t) else {
        return Ok(0);
    };
    let candidates = store.candidates().await?;
    let (chosen, _) = select(&candidates, want);
    let mut freed = 0u64;
    for c in chosen {
        for name in &c.names {
            store.delete(name).await?;
        }
        info!(images = ?c.names, size = c.size, "image garbage-collected");
        freed = freed.saturating_add(c.size);
    }
    if freed < want {
        return Err(GcError::NotEnough {
            wanted: want,
            freed,
        });
    }
    Ok(freed)
}

/// containerd's images and containers, with last-use times from the pod lifecycle.
pub struct ContainerdImages<'a> {
    pub runtime: &'a RuntimeClient,
    pub last_used: &'a (dyn Fn(&str) -> Option<SystemTime> + Send + Sync),
}

fn to_system_time(t: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    let t = t?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

impl ImageStore for ContainerdImages<'_> {
    async fn candidates(&self) -> Result<Vec<Candidate>, GcError> {
        let list = |source| GcError::List {
            source: Box::new(source),
        };
        let images = self.runtime.list_images().await.map_err(list)?;
        let used: HashSet<String> = self
            .runtime
            .list_containers(&BTreeMap::new())
            .await
            .map_err(list)?
            .into_iter()
            .map(|c| c.image)
            .collect();
        let mut by_target: BTreeMap<String, (containerd_client::types::Descriptor, Candidate)> =
            BTreeMap::new();
        for image in images {
            let Some(target) = image.target.clone() else {
                continue;
            };
            let seen = to_system_time(image.created_at.as_ref()).unwrap_or(SystemTime::UNIX_EPOCH);
            let last = (self.last_used)(&image.name).unwrap_or(seen);
            let entry = by_target.entry(target.digest.clone()).or_insert_with(|| {
                (
                    target,
                    Candidate {
                        names: Vec::new(),
                        size: 0,
                        pinned: false,
                        in_use: false,
                        last_used: last,
                    },
                )
            });
            let (target, c) = entry;
            c.pinned |= image.labels.contains_key(LABEL_PINNED);
            // A container names its image by record name (or by target digest).
            c.in_use |= used.contains(&image.name) || used.contains(&target.digest);
            c.last_used = c.last_used.max(last);
            c.names.push(image.name);
        }
        let mut out = Vec::new();
        for (digest, (target, mut c)) in by_target {
            match image_size(self.runtime, &target).await {
                Ok(s) => c.size = s,
                Err(e) => debug!(digest, error = %e, "cannot size image; counting it as empty"),
            }
            out.push(c);
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), GcError> {
        self.runtime
            .delete_image(name)
            .await
            .map(|_| ())
            .map_err(|source| GcError::Delete {
                name: name.to_string(),
                source: Box::new(source),
            })
    }
}

/// The image file system: containerd's root when skiff runs it, else the agent dir.
fn image_fs(agent_dir: &Path) -> PathBuf {
    let root = agent_dir.join("containerd").join("root");
    if root.exists() {
        root
    } else {
        agent_dir.to_path_buf()
    }
}

fn usage_of(path: &Path) -> Option<FsUsage> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size();
    Some(FsUsage {
        capacity: s.blocks().saturating_mul(frag),
        available: s.blocks_available().saturating_mul(frag),
    })
}

/// The collection loop of the pod lifecycle; ends on shutdown.
pub(super) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PERIOD, PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
            _ = tick.tick() => {
                let fs = image_fs(&shared.config.agent_dir);
                let Some(usage) = usage_of(&fs) else { continue };
                let last_used = |name: &str| shared.pulls.last_used(name);
                let store = ContainerdImages { runtime: &shared.runtime, last_used: &last_used };
                match collect(&store, usage, Thresholds::default()).await {
                    Ok(0) => {}
                    Ok(freed) => info!(freed, "image garbage collection freed space"),
                    Err(e) => warn!(error = %e, "image garbage collection"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const GIB: u64 = 1 << 30;

    #[test]
    fn bytes_to_free_follows_the_thresholds() {
        let t = Thresholds::default();
        let cases = [
            // 50 % used: nothing to do
            (100 * GIB, 50 * GIB, None),
            // 84 % used: still under the high threshold
            (100 * GIB, 16 * GIB, None),
            // 85 % used: free down to 80 %
            (100 * GIB, 15 * GIB, Some(5 * GIB)),
            // 95 % used
            (100 * GIB, 5 * GIB, Some(15 * GIB)),
            (0, 0, None),
        ];
        for (capacity, available, want) in cases {
            assert_eq!(
                bytes_to_free(
                    FsUsage {
                        capacity,
                        available
                    },
                    t
                ),
                want,
                "{capacity} {available}"
            );
        }
    }

    fn cand(name: &str, size: u64, pinned: bool, in_use: bool, age_secs: u64) -> Candidate {
        Candidate {
            names: vec![name.to_string()],
            size,
            pinned,
            in_use,
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(age_secs),
        }
    }

    #[test]
    fn selection_is_oldest_unused_unpinned_first_until_enough() {
        let images = vec![
            cand("new", 10, false, false, 300),
            cand("old", 10, false, false, 100),
            cand("pinned", 100, true, false, 1),
            cand("used", 100, false, true, 2),
            cand("mid", 10, false, false, 200),
        ];
        let cases: [(u64, &[&str], u64); 5] = [
            (0, &[], 0),
            (1, &["old"], 10),
            (10, &["old"], 10),
            (15, &["old", "mid"], 20),
            (1000, &["old", "mid", "new"], 30),
        ];
        for (want, names, freed) in cases {
            let (chosen, got) = select(&images, want);
            let chosen: Vec<&str> = chosen.iter().map(|c| c.names[0].as_str()).collect();
            assert_eq!(chosen, names, "want {want}");
            assert_eq!(got, freed, "want {want}");
        }
    }

    struct Fake {
        images: Vec<Candidate>,
        deleted: Mutex<Vec<String>>,
    }

    impl ImageStore for Fake {
        async fn candidates(&self) -> Result<Vec<Candidate>, GcError> {
            Ok(self.images.clone())
        }
        async fn delete(&self, name: &str) -> Result<(), GcError> {
            self.deleted.lock().unwrap().push(name.to_string());
            Ok(())
        }
    }

    #[tokio::test]
    async fn collect_deletes_every_name_and_reports_shortfall() {
        let mut two_names = cand("a:1", 4 * GIB, false, false, 1);
        two_names.names.push("a:latest".into());
        let fake = Fake {
            images: vec![two_names, cand("b", GIB, true, false, 0)],
            deleted: Mutex::new(Vec::new()),
        };
        let usage = FsUsage {
            capacity: 100 * GIB,
            available: 10 * GIB,
        };
        let r = collect(&fake, usage, Thresholds::default()).await;
        assert!(
            matches!(r, Err(GcError::NotEnough { wanted, freed }) if wanted == 10 * GIB && freed == 4 * GIB)
        );
        assert_eq!(*fake.deleted.lock().unwrap(), vec!["a:1", "a:latest"]);

        let calm = Fake {
            images: vec![cand("c", GIB, false, false, 0)],
            deleted: Mutex::new(Vec::new()),
        };
        let low = FsUsage {
            capacity: 100 * GIB,
            available: 50 * GIB,
        };
        assert_eq!(collect(&calm, low, Thresholds::default()).await.unwrap(), 0);
        assert!(calm.deleted.lock().unwrap().is_empty());
    }
}
