//! Leader election through coordination.k8s.io Leases, as client-go's `leaderelection` with a
//! Lease lock: at most one holder per lease does the elected work; expiry is judged by when this
//! candidate last saw the record change, never by comparing clocks across machines.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

/// The lease kube-controller-manager elects its leader with.
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";
/// The lease kube-scheduler elects its leader with.
pub const SCHEDULER_LEASE: &str = "kube-scheduler";

/// What can go wrong talking to the lease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} lease {namespace}/{name}: {source}")]
    Lease {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// One election: the lease, who we are, and upstream's timings.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// `holderIdentity` written while leading: `<hostname>_<uuid>` as upstream.
    pub identity: String,
    /// How long a non-leader waits after last seeing the record change before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failed renewal before giving up leadership.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// The lease `kube-system/<name>` with upstream's timings (15 s, 10 s, 2 s).
    pub fn new(name: &str, identity: String) -> LeaderConfig {
        LeaderConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<hostname>_<uuid>`, the identity upstream components elect with.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// What to write after looking at the lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No lease yet: create it holding it.
    Create(LeaseSpec),
    /// Write this record (a renewal, or a takeover of an expired or released lease) with the
    /// read resourceVersion as precondition.
    Update(LeaseSpec),
    /// Someone else holds a lease that has not expired as far as we have seen.
    Wait,
}

/// The candidate's memory of the lease: the last record seen and when it was first seen so.
#[derive(Debug, Clone)]
pub struct Election {
    identity: String,
    lease_duration: Duration,
    observed: Option<LeaseSpec>,
    observed_at: Option<Instant>,
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
}

impl Election {
    pub fn new(identity: String, lease_duration: Duration) -> Election {
        Election {
            identity,
            lease_duration,
            observed: None,
            observed_at: None,
        }
    }

    /// True when the last record seen or written names us as holder.
    pub fn is_leader(&self) -> bool {
        self.observed
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .is_some_and(|h| h == self.identity)
    }

    /// Whether the observed holder's term still runs at `now` (local time since we saw it).
    fn observed_valid(&self, now: Instant) -> bool {
        let (Some(spec), Some(at)) = (&self.observed, self.observed_at) else {
            return false;
        };
        let secs = spec
            .lease_duration_seconds
            .map_or(self.lease_duration.as_secs(), |s| {
                u64::try_from(s).unwrap_or(0)
            });
        at + Duration::from_secs(secs) > now
    }

    /// Decides from the lease as read (`None`: absent) at local time `now`, wall time `wall`.
    pub fn decide(
        &mut self,
        current: Option<&LeaseSpec>,
        now: Instant,
        wall: Timestamp,
    ) -> Decision {
        let fresh = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds(self.lease_duration)),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        let Some(current) = current else {
            return Decision::Create(fresh);
        };
        if self.observed.as_ref() != Some(current) {
            self.observed = Some(current.clone());
            self.observed_at = Some(now);
        }
        let held = current
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
        if held && self.observed_valid(now) && !self.is_leader() {
            return Decision::Wait;
        }
        let transitions = current.lease_transitions.unwrap_or(0);
        let mut next = LeaseSpec {
            lease_transitions: Some(transitions.saturating_add(1)),
            ..fresh
        };
        if self.is_leader() {
            next.acquire_time = current.acquire_time.clone();
            next.lease_transitions = Some(transitions);
        }
        Decision::Update(next)
    }

    /// Remembers a record we wrote successfully at `now`.
    pub fn wrote(&mut self, spec: LeaseSpec, now: Instant) {
        self.observed = Some(spec);
        self.observed_at = Some(now);
    }

    /// The record that gives the lease up at once (no holder, one-second term), if we hold it.
    pub fn release_record(&self, wall: Timestamp) -> Option<LeaseSpec> {
        self.is_leader().then(|| LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: self.observed.as_ref().and_then(|s| s.lease_transitions),
            ..LeaseSpec::default()
        })
    }
}

/// A candidate for one lease, writing as its client's identity.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    election: Election,
    /// The lease as last read or written (its resourceVersion guards our next write).
    lease: Option<Lease>,
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaderConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            election: Election::new(config.identity.clone(), config.lease_duration),
            config,
            lease: None,
        }
    }

    fn error(&self, action: &'static str) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |source| Error::Lease {
            action,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    /// One attempt to acquire or renew: true when we hold the lease afterwards. Losing a race
    /// (409 Conflict or 409 AlreadyExists) is not an error, just `false`.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(self.error("get"))?;
        let spec = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let decision = self.election.decide(
            current.as_ref().map(|_| &spec),
            Instant::now(),
            Timestamp::now(),
        );
        let (next, written) = match decision {
            Decision::Wait => {
                self.lease = current;
                return Ok(false);
            }
            Decision::Create(next) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next.clone()),
                };
                let r = self.api.create(&PostParams::default(), &lease).await;
                (next, r)
            }
            Decision::Update(next) => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(next.clone());
                let r = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await;
                (next, r)
            }
        };
        match written {
            Ok(lease) => {
                self.election.wrote(next, Instant::now());
                self.lease = Some(lease);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.error("write")(e)),
        }
    }

    /// Gives the lease up if we hold it, so a successor need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), Error> {
        let (Some(record), Some(mut lease)) = (
            self.election.release_record(Timestamp::now()),
            self.lease.clone(),
        ) else {
            return Ok(());
        };
        lease.spec = Some(record.clone());
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(self.error("release"))?;
        self.election.wrote(record, Instant::now());
        Ok(())
    }

    async fn attempt(&mut self) -> bool {
        match self.try_acquire_or_renew().await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(error = %e, "leader election attempt failed");
                false
            }
        }
    }

    /// Campaigns until `resign` turns true, reporting on `leading` whether we lead; a leader
    /// that cannot renew within the renew deadline steps down and campaigns again. On resign,
    /// the lease is released.
    pub async fn run(mut self, mut resign: watch::Receiver<bool>, leading: watch::Sender<bool>) {
        let retry = self.config.retry_period;
        'campaign: loop {
            // Acquire: retry (with upstream's 1.2 jitter factor) until we hold the lease.
            while !self.attempt().await {
                let pause = retry.mul_f64(1.0 + rand::random::<f64>() * 1.2);
                if sleep_or_resign(pause, &mut resign).await {
                    break 'campaign;
                }
            }
            tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
            let _ = leading.send(true);
            // Renew every retry period; each renewal may retry until the renew deadline.
            loop {
                if sleep_or_resign(retry, &mut resign).await {
                    break 'campaign;
                }
                let deadline = Instant::now() + self.config.renew_deadline;
                let mut renewed = self.attempt().await;
                while !renewed && Instant::now() + retry < deadline {
                    if sleep_or_resign(retry, &mut resign).await {
                        break 'campaign;
                    }
                    renewed = self.attempt().await;
                }
                if !renewed {
                    tracing::warn!(lease = %self.config.name, "failed to renew the lease; stepping down");
                    let _ = leading.send(false);
                    continue 'campaign;
                }
            }
        }
        let _ = leading.send(false);
        if let Err(e) = self.release().await {
            tracing::debug!(error = %e, "could not release the lease");
        }
    }
}

/// Sleeps `d`; true when `resign` turned true (or its sender is gone) first.
async fn sleep_or_resign(d: Duration, resign: &mut watch::Receiver<bool>) -> bool {
    if *resign.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = resign.wait_for(|r| *r) => true,
    }
}

/// Runs `work` only while this candidate leads: it gets a receiver that turns true when it must
/// stop (leadership lost or `shutdown`), and is started again after a later re-election.
/// Returns after `shutdown`, once the work has stopped and the lease has been released.
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    config: LeaderConfig,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (resign_tx, resign_rx) = watch::channel(false);
    let (leading_tx, mut leading) = watch::channel(false);
    let elector = tokio::spawn(LeaderElector::new(client, config).run(resign_rx, leading_tx));
    loop {
        tokio::select! {
            r = leading.wait_for(|l| *l) => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let run = work(stop_rx);
        tokio::pin!(run);
        let mut finished = false;
        let shutting_down = loop {
            tokio::select! {
                () = &mut run, if !finished => {
                    finished = true;
                    tracing::warn!("elected work ended while leading");
                }
                r = leading.wait_for(|l| !*l) => break r.is_err(),
                _ = shutdown.wait_for(|s| *s) => break true,
            }
        };
        let _ = stop_tx.send(true);
        if !finished {
            run.await;
        }
        if shutting_down {
            break;
        }
    }
    let _ = resign_tx.send(true);
    let _ = elector.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn held_by(holder: &str, renewed: i64, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(wall(0))),
            renew_time: Some(MicroTime(wall(renewed))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn absent_lease_is_created_holding_it() {
        let mut e = Election::new("me".into(), Duration::from_secs(15));
        let Decision::Create(spec) = e.decide(None, Instant::now(), wall(0)) else {
            panic!("create")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.renew_time, Some(MicroTime(wall(0))));
    }

    #[test]
    fn expiry_is_judged_by_local_observation_time_not_remote_timestamps() {
        let t0 = Instant::now();
        let secs = |s| t0 + Duration::from_secs(s);
        // A record renewed "long ago" by the remote clock still counts as fresh when first seen.
        let other = held_by("other", -3600, 2);
        let mut e = Election::new("me".into(), Duration::from_secs(15));
        // (seconds since first sight of the unchanged record, wait?)
        let cases = [(0, true), (10, true), (14, true), (15, false), (20, false)];
        for (t, wait) in cases {
            let d = e.decide(Some(&other), secs(t), wall(t as i64));
            assert_eq!(d == Decision::Wait, wait, "at {t}s");
        }
        // A change to the record restarts the clock.
        let renewed = held_by("other", 20, 2);
        assert_eq!(e.decide(Some(&renewed), secs(21), wall(21)), Decision::Wait);
        assert_eq!(e.decide(Some(&renewed), secs(35), wall(35)), Decision::Wait);
        let Decision::Update(takeover) = e.decide(Some(&renewed), secs(36), wall(36)) else {
            panic!("takeover")
        };
        assert_eq!(takeover.holder_identity.as_deref(), Some("me"));
        assert_eq!(takeover.lease_transitions, Some(3));
        assert_eq!(takeover.acquire_time, Some(MicroTime(wall(36))));
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions() {
        let t0 = Instant::now();
        let mut e = Election::new("me".into(), Duration::from_secs(15));
        let mine = held_by("me", 0, 4);
        e.wrote(mine.clone(), t0);
        assert!(e.is_leader());
        let Decision::Update(next) = e.decide(Some(&mine), t0 + Duration::from_secs(2), wall(2))
        else {
            panic!("renew")
        };
        assert_eq!(next.holder_identity.as_deref(), Some("me"));
        assert_eq!(next.lease_transitions, Some(4));
        assert_eq!(next.acquire_time, Some(MicroTime(wall(0))));
        assert_eq!(next.renew_time, Some(MicroTime(wall(2))));
    }

    #[test]
    fn released_lease_is_taken_over_at_once() {
        let t0 = Instant::now();
        let mut leader = Election::new("a".into(), Duration::from_secs(15));
        leader.wrote(held_by("a", 0, 1), t0);
        let released = leader.release_record(wall(5)).unwrap();
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(1));
        let mut b = Election::new("b".into(), Duration::from_secs(15));
        let Decision::Update(next) = b.decide(Some(&released), t0, wall(5)) else {
            panic!("take over a released lease")
        };
        assert_eq!(next.holder_identity.as_deref(), Some("b"));
        assert_eq!(next.lease_transitions, Some(2));
        assert!(
            Election::new("c".into(), Duration::from_secs(1))
                .release_record(wall(0))
                .is_none()
        );
    }

    #[test]
    fn identities_are_hostname_and_uuid() {
        let id = default_identity();
        let (host, uuid) = id.rsplit_once('_').unwrap();
        assert!(!host.is_empty());
        assert!(uuid::Uuid::parse_str(uuid).is_ok());
    }
}
