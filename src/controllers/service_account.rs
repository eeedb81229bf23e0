//! The service-account controller, as upstream's: every active namespace has a `default`
//! ServiceAccount, re-created when deleted. Never touches accounts other than the ones it
//! ensures, and never writes to namespaces being deleted.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::monitors::MonitorEvent;
use super::queue::WorkQueue;
use super::stopped;

/// The account every namespace gets.
pub const DEFAULT_ACCOUNT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {verb} in namespace {namespace}: {source}")]
    Api {
        verb: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// Settings of the service-account controller.
#[derive(Debug, Clone)]
pub struct ServiceAccountControllerConfig {
    pub workers: usize,
    /// The names of the accounts ensured in every namespace.
    pub accounts: Vec<String>,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for ServiceAccountControllerConfig {
    fn default() -> Self {
        ServiceAccountControllerConfig {
            workers: 1,
            accounts: vec![DEFAULT_ACCOUNT.to_owned()],
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Whether an event may need an account (re)created, and in which namespace.
fn namespace_to_sync(event: &MonitorEvent, accounts: &[String]) -> Option<String> {
    match event {
        MonitorEvent::Applied { object, .. }
            if object.def.group.is_empty() && object.def.plural == "namespaces" =>
        {
            (!object.being_deleted).then(|| object.name.clone())
        }
        MonitorEvent::Deleted(object)
            if object.def.group.is_empty()
                && object.def.plural == "serviceaccounts"
                && accounts.contains(&object.name) =>
        {
            object.namespace.clone()
        }
        _ => None,
    }
}

/// Runs the controller on the monitors' events until `shutdown` turns true or they are gone.
pub(crate) async fn run(
    client: super::ReadWrite,
    config: ServiceAccountControllerConfig,
    mut events: mpsc::Receiver<Arc<MonitorEvent>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let queue = WorkQueue::new(config.retry_base, config.retry_max);
    let accounts = Arc::new(config.accounts.clone());
    let mut workers = JoinSet::new();
    for _ in 0..config.workers.max(1) {
        workers.spawn(work(client.clone(), queue.clone(), accounts.clone()));
    }
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            event = events.recv() => match event {
                Some(event) => {
                    if let Some(ns) = namespace_to_sync(&event, &accounts) {
                        queue.add(ns);
                    }
                }
                None => break,
            },
        }
    }
    queue.shut_down();
    while workers.join_next().await.is_some() {}
    Ok(())
}

async fn work(client: super::ReadWrite, queue: Arc<WorkQueue<String>>, accounts: Arc<Vec<String>>) {
    while let Some(ns) = queue.next().await {
        match sync(&client, &ns, &accounts)
            .instrument(
                tracing::info_span!("reconcile", controller = "serviceaccount", namespace = %ns),
            )
            .await
        {
            Ok(()) => queue.forget(&ns),
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, "service-account controller: will retry");
                queue.add_rate_limited(ns.clone());
            }
        }
        queue.done(&ns);
    }
}

async fn sync(
    client: &super::ReadWrite,
    namespace: &str,
    accounts: &[String],
) -> Result<(), Error> {
    let err = |verb: &'static str| {
        let namespace = namespace.to_owned();
        move |source| Error::Api {
            verb,
            namespace,
            source,
        }
    };
    let namespaces: Api<Namespace> = Api::all(client.read.clone());
    let Some(ns) = super::get_via_list(&namespaces, namespace)
        .await
        .map_err(err("read the namespace"))?
    else {
        return Ok(());
    };
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<ServiceAccount> = Api::namespaced(client.write.clone(), namespace);
    let reader: Api<ServiceAccount> = Api::namespaced(client.read.clone(), namespace);
    for name in accounts {
        if super::get_via_list(&reader, name)
            .await
            .map_err(err("read a service account"))?
            .is_some()
        {
            continue;
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::debug!(namespace, account = %name, "created service account"),
            // Created meanwhile, or the namespace started terminating: nothing to do.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(err("create a service account")(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;
    use crate::controllers::monitors::{Observed, Uid};

    fn observed(
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        being_deleted: bool,
    ) -> Observed {
        Observed {
            def: lookup("", "v1", plural).unwrap(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
            uid: Uid("u".into()),
            owners: vec![],
            being_deleted,
            finalizers: vec![],
        }
    }

    #[test]
    fn namespaces_and_deleted_default_accounts_are_synced() {
        let accounts = vec![DEFAULT_ACCOUNT.to_owned()];
        let applied = |o| MonitorEvent::Applied {
            object: o,
            initial: false,
        };
        let table = [
            (
                "new namespace",
                applied(observed("namespaces", None, "dev", false)),
                Some("dev"),
            ),
            (
                "terminating namespace",
                applied(observed("namespaces", None, "dev", true)),
                None,
            ),
            (
                "default deleted",
                MonitorEvent::Deleted(observed("serviceaccounts", Some("dev"), "default", false)),
                Some("dev"),
            ),
            (
                "other account deleted",
                MonitorEvent::Deleted(observed("serviceaccounts", Some("dev"), "app", false)),
                None,
            ),
            (
                "pod applied",
                applied(observed("pods", Some("dev"), "p", false)),
                None,
            ),
        ];
        for (case, event, want) in table {
            assert_eq!(
                namespace_to_sync(&event, &accounts).as_deref(),
                want,
                "{case}"
            );
        }
    }
}
