//! A container's environment resolved as upstream's kubelet does (`makeEnvironmentVariables`):
//! `envFrom`, `env` with `$(VAR)` expansion and `valueFrom`, service links. Pure: ConfigMaps and
//! Secrets come through [`EnvSources`], which the caller implements; never any I/O here.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Error;
use super::expansion::expand;
use super::quantity::Amount;

/// An error from the caller's object lookup (a failed list, a closed cache).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where ConfigMaps and Secrets referenced by env come from (the kubelet's informer caches).
/// `Ok(None)` means the object does not exist.
pub trait EnvSources {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ConfigMap>>, SourceError>;
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, SourceError>;
}

/// Fixed maps of objects keyed by `(namespace, name)`: for tests and for callers that fetched
/// everything up front.
#[derive(Debug, Clone, Default)]
pub struct StaticSources {
    pub config_maps: BTreeMap<(String, String), Arc<ConfigMap>>,
    pub secrets: BTreeMap<(String, String), Arc<Secret>>,
}

impl EnvSources for StaticSources {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ConfigMap>>, SourceError> {
        Ok(self
            .config_maps
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, SourceError> {
        Ok(self
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }
}

/// One environment variable of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Something the caller should report as a Warning event on the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvWarning {
    /// `envFrom` keys that cannot be environment variable names were skipped.
    InvalidKeys {
        kind: &'static str,
        namespace: String,
        name: String,
        keys: Vec<String>,
    },
}

impl EnvWarning {
    /// The event reason upstream uses.
    pub fn reason(&self) -> &'static str {
        match self {
            EnvWarning::InvalidKeys { .. } => "InvalidEnvironmentVariableNames",
        }
    }
}

impl fmt::Display for EnvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvWarning::InvalidKeys {
                kind,
                namespace,
                name,
                keys,
            } => write!(
                f,
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                keys.join(", ")
            ),
        }
    }
}

/// The container's resolved environment, in a stable order: `envFrom` keys, then `env` in
/// declaration order (a later definition replaces an earlier one in place), then service links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedEnv {
    pub vars: Vec<EnvVar>,
    pub warnings: Vec<EnvWarning>,
}

impl ResolvedEnv {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    }
}

/// What env resolution needs to know besides the pod and container.
#[derive(Debug, Clone, Copy)]
pub struct EnvContext<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// The pod's IPs, preferred family first (`status.podIP` is the first).
    pub pod_ips: &'a [String],
    /// The node's IPs, preferred family first.
    pub host_ips: &'a [String],
    /// Node allocatable: the default for `resourceFieldRef` limits the container does not set.
    pub node_allocatable: &'a BTreeMap<String, Quantity>,
    /// Every Service the node knows; filtered here by namespace and `enableServiceLinks`.
    pub services: &'a [Service],
}

/// An ordered map: insertion order, replacement in place.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<EnvVar>,
    index: BTreeMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => {
                if let Some(v) = self.vars.get_mut(i) {
                    v.value = value;
                }
            }
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push(EnvVar { name, value });
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        let i = *self.index.get(name)?;
        self.vars.get(i).map(|v| v.value.as_str())
    }
}

/// Resolves the container's environment as upstream's kubelet does.
pub fn resolve_env(ctx: &EnvContext<'_>, sources: &dyn EnvSources) -> Result<ResolvedEnv, Error> {
    let namespace = ctx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let service_env = service_link_env(namespace, enable_service_links(ctx.pod), ctx.services);
    let mut cache = Cache {
        namespace,
        sources,
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut env = OrderedEnv::default();
    let mut warnings = Vec::new();

    for from in ctx.container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let mut invalid = Vec::new();
        let (kind, name, entries): (&'static str, &str, Vec<(String, String)>) =
            if let Some(r) = &from.config_map_ref {
                let Some(cm) = cache.config_map(&r.name, r.optional == Some(true))? else {
                    continue;
                };
                let data = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                ("configMap", &r.name, data)
            } else if let Some(r) = &from.secret_ref {
                let Some(secret) = cache.secret(&r.name, r.optional == Some(true))? else {
                    continue;
                };
                let data = secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                ("secret", &r.name, data)
            } else {
                continue;
            };
        for (key, value) in entries {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(EnvWarning::InvalidKeys {
                kind,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                keys: invalid,
            });
        }
    }

    for var in ctx.container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or("");
        let value = if !literal.is_empty() {
            let lookup = |name: &str| {
                env.get(name)
                    .or_else(|| service_env.get(name))
                    .map(str::to_owned)
            };
            expand(literal, &lookup)
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_ref_value(ctx, field)?
            } else if let Some(resource) = &from.resource_field_ref {
                resource_field_ref_value(ctx, resource)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = cache.config_map(&r.name, optional)? else {
                    continue;
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(Error::MissingKey {
                            key: r.key.clone(),
                            kind: "ConfigMap",
                            namespace: namespace.to_owned(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(secret) = cache.secret(&r.name, optional)? else {
                    continue;
                };
                match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(Error::MissingKey {
                            key: r.key.clone(),
                            kind: "Secret",
                            namespace: namespace.to_owned(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else {
                // fileKeyRef (feature-gated upstream, needs volume contents) is not supported.
                return Err(Error::UnsupportedEnvSource {
                    name: var.name.clone(),
                });
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }

    let mut vars = env.vars;
    for (name, value) in service_env.into_vars() {
        if !env.index.contains_key(&name) {
            vars.push(EnvVar { name, value });
        }
    }
    Ok(ResolvedEnv { vars, warnings })
}

/// `enableServiceLinks` defaults to true.
fn enable_service_links(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true)
}

/// With relaxed environment variable validation (GA upstream) any printable ASCII but `=` is a
/// valid name; keys outside that could not be passed to a process at all.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

struct Cache<'a> {
    namespace: &'a str,
    sources: &'a dyn EnvSources,
    config_maps: BTreeMap<String, Arc<ConfigMap>>,
    secrets: BTreeMap<String, Arc<Secret>>,
}

impl Cache<'_> {
    /// `Ok(None)` only for a missing optional object.
    fn config_map(&mut self, name: &str, optional: bool) -> Result<Option<Arc<ConfigMap>>, Error> {
        if let Some(cm) = self.config_maps.get(name) {
            return Ok(Some(cm.clone()));
        }
        let found = self
            .sources
            .config_map(self.namespace, name)
            .map_err(|source| Error::Lookup {
                kind: "configmap",
                namespace: self.namespace.to_owned(),
                name: name.to_owned(),
                source,
            })?;
        match found {
            Some(cm) => {
                self.config_maps.insert(name.to_owned(), cm.clone());
                Ok(Some(cm))
            }
            None if optional => Ok(None),
            None => Err(Error::NotFound {
                kind: "configmap",
                name: name.to_owned(),
            }),
        }
    }

    fn secret(&mut self, name: &str, optional: bool) -> Result<Option<Arc<Secret>>, Error> {
        if let Some(s) = self.secrets.get(name) {
            return Ok(Some(s.clone()));
        }
        let found = self
            .sources
            .secret(self.namespace, name)
            .map_err(|source| Error::Lookup {
                kind: "secret",
                namespace: self.namespace.to_owned(),
                name: name.to_owned(),
                source,
            })?;
        match found {
            Some(s) => {
                self.secrets.insert(name.to_owned(), s.clone());
                Ok(Some(s))
            }
            None if optional => Ok(None),
            None => Err(Error::NotFound {
                kind: "secret",
                name: name.to_owned(),
            }),
        }
    }
}

/// The value of a downward-API `fieldRef` (`podFieldSelectorRuntimeValue`).
pub fn field_ref_value(ctx: &EnvContext<'_>, field: &ObjectFieldSelector) -> Result<String, Error> {
    let meta = &ctx.pod.metadata;
    let spec = ctx.pod.spec.as_ref();
    let path = field.field_path.as_str();
    if let Some(api_version) = field.api_version.as_deref()
        && !api_version.is_empty()
        && api_version != "v1"
    {
        return Err(Error::UnsupportedFieldPath {
            path: format!("{api_version}:{path}"),
        });
    }
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => ctx.host_ips.first().cloned().ok_or(Error::NoHostIp)?,
        "status.hostIPs" => {
            if ctx.host_ips.is_empty() {
                return Err(Error::NoHostIp);
            }
            ctx.host_ips.join(",")
        }
        "status.podIP" => ctx.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => ctx.pod_ips.join(","),
        other => {
            if let Some(key) = subscript(other, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript(other, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(Error::UnsupportedFieldPath {
                    path: other.to_owned(),
                });
            }
        }
    };
    Ok(value)
}

/// `metadata.labels['key']` -> `key`.
fn subscript<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
    rest.strip_suffix("']")
}

/// Upstream's `FormatMap`: `key="value"` lines, sorted by key, each quoted as Go's `%q`.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let mut out = String::new();
    for (k, v) in map.into_iter().flatten() {
        out.push_str(k);
        out.push('=');
        out.push_str(&serde_json::Value::String(v.clone()).to_string());
        out.push('\n');
    }
    out.trim_end_matches('\n').to_owned()
}

/// The value of a `resourceFieldRef`: limits default to node allocatable when the container sets
/// none (`defaultPodLimitsForDownwardAPI`), then the amount divided by the divisor, rounded up.
pub fn resource_field_ref_value(
    ctx: &EnvContext<'_>,
    selector: &ResourceFieldSelector,
) -> Result<String, Error> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => ctx.container,
        Some(name) => ctx
            .pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| Error::UnknownContainer {
                name: name.to_owned(),
            })?,
    };
    let resources = container.resources.as_ref();
    let (list, resource) = if let Some(r) = selector.resource.strip_prefix("limits.") {
        (resources.and_then(|r| r.limits.as_ref()), r)
    } else if let Some(r) = selector.resource.strip_prefix("requests.") {
        (resources.and_then(|r| r.requests.as_ref()), r)
    } else {
        return Err(Error::UnsupportedResource {
            resource: selector.resource.clone(),
        });
    };
    let is_cpu = match resource {
        "cpu" => true,
        "memory" | "ephemeral-storage" => false,
        r if r.starts_with("hugepages-") => false,
        _ => {
            return Err(Error::UnsupportedResource {
                resource: selector.resource.clone(),
            });
        }
    };
    let mut amount = list
        .and_then(|l| l.get(resource))
        .and_then(|q| Amount::parse(&q.0));
    let defaults_to_allocatable = matches!(resource, "cpu" | "memory" | "ephemeral-storage");
    if amount.is_none() && selector.resource.starts_with("limits.") && defaults_to_allocatable {
        amount = ctx
            .node_allocatable
            .get(resource)
            .and_then(|q| Amount::parse(&q.0));
    }
    let amount = amount.unwrap_or(Amount::ZERO);
    let divisor = selector
        .divisor
        .as_ref()
        .and_then(|q| Amount::parse(&q.0))
        .filter(|d| !d.is_zero())
        .unwrap_or(Amount::parse("1").unwrap_or(Amount::ZERO));
    let (n, d) = if is_cpu {
        (amount.milli(), divisor.milli())
    } else {
        (amount.value(), divisor.value())
    };
    if d <= 0 {
        return Err(Error::InvalidDivisor {
            resource: selector.resource.clone(),
        });
    }
    let q = n.div_euclid(d) + i64::from(n.rem_euclid(d) != 0);
    Ok(q.to_string())
}

/// Service-link variables in a stable order (by service name).
#[derive(Debug, Default)]
struct ServiceEnv {
    vars: Vec<(String, String)>,
}

impl ServiceEnv {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// The `<SVC>_SERVICE_HOST`-style variables a pod in `namespace` sees: always the `kubernetes`
/// Service of `default` (`KUBERNETES_*`), plus every Service of its namespace when service links
/// are enabled. Services without a cluster IP (headless, ExternalName) are skipped.
pub fn service_env(
    namespace: &str,
    enable_service_links: bool,
    services: &[Service],
) -> Vec<EnvVar> {
    service_link_env(namespace, enable_service_links, services)
        .into_vars()
        .into_iter()
        .map(|(name, value)| EnvVar { name, value })
        .collect()
}

fn service_link_env(namespace: &str, enable_links: bool, services: &[Service]) -> ServiceEnv {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services {
        let Some(ip) = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) else {
            continue;
        };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let ns = svc.metadata.namespace.as_deref().unwrap_or("");
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_links {
            chosen.insert(name, svc);
        }
    }
    let mut env = ServiceEnv::default();
    for (name, svc) in chosen {
        add_service_vars(&mut env.vars, name, svc);
    }
    env
}

fn env_name(s: &str) -> String {
    let upper = s.replace(['.', '-'], "_").to_uppercase();
    if upper.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{upper}")
    } else {
        upper
    }
}

fn add_service_vars(out: &mut Vec<(String, String)>, name: &str, svc: &Service) {
    let Some(spec) = svc.spec.as_ref() else {
        return;
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let prefix = env_name(name);
    out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let Some(first) = ports.first() else { return };
    out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for p in ports {
        if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                p.port.to_string(),
            ));
        }
    }
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.clone()
    };
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{host}:{}", p.port);
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.clone()));
    }
}

/// The container's command and args with `$(VAR)` references expanded against its resolved
/// environment (`ExpandContainerCommandAndArgs`).
pub fn expand_command_and_args(
    container: &Container,
    env: &[EnvVar],
) -> (Vec<String>, Vec<String>) {
    let map: BTreeMap<&str, &str> = env
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    let lookup = |name: &str| map.get(name).map(|v| (*v).to_owned());
    let expand_all = |items: &Option<Vec<String>>| -> Vec<String> {
        items.iter().flatten().map(|s| expand(s, &lookup)).collect()
    };
    (expand_all(&container.command), expand_all(&container.args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec_extra: serde_json::Value) -> Pod {
        let mut spec = json!({
            "nodeName": "node-1",
            "serviceAccountName": "builder",
            "containers": [{"name": "app", "image": "busybox",
                "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}}},
                {"name": "side", "image": "busybox", "resources": {"limits": {"memory": "1Gi"}}}]
        });
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "uid-1",
                "labels": {"app": "web", "tier": "front"}, "annotations": {"note": "a \"b\""}},
            "spec": spec
        }))
        .unwrap()
    }

    fn sources() -> StaticSources {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg", "namespace": "shop"},
            "data": {"MODE": "prod", "LEVEL": "3", "bad=key": "x", "with space": "ok"}
        }))
        .unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds", "namespace": "shop"},
            "data": {"PASSWORD": "aHVudGVyMg=="}
        }))
        .unwrap();
        let mut s = StaticSources::default();
        s.config_maps
            .insert(("shop".into(), "cfg".into()), Arc::new(cm));
        s.secrets
            .insert(("shop".into(), "creds".into()), Arc::new(secret));
        s
    }

    fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .unwrap()
    }

    fn services() -> Vec<Service> {
        vec![
            service(
                "default",
                "kubernetes",
                "10.43.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            service("shop", "redis-main", "10.43.0.20", json!([{"port": 6379}])),
            service("shop", "headless", "None", json!([{"port": 80}])),
            service("other", "db", "10.43.0.30", json!([{"port": 5432}])),
        ]
    }

    fn resolve(
        container: serde_json::Value,
        spec_extra: serde_json::Value,
    ) -> Result<ResolvedEnv, Error> {
        let pod = pod(spec_extra);
        let container: Container = serde_json::from_value(container).unwrap();
        let allocatable = BTreeMap::from([
            ("cpu".to_owned(), Quantity("4".into())),
            ("memory".to_owned(), Quantity("8Gi".into())),
        ]);
        let services = services();
        let pod_ips = ["10.42.0.7".to_owned(), "fd00::7".to_owned()];
        let host_ips = ["192.168.1.10".to_owned()];
        let ctx = EnvContext {
            pod: &pod,
            container: &container,
            pod_ips: &pod_ips,
            host_ips: &host_ips,
            node_allocatable: &allocatable,
            services: &services,
        };
        resolve_env(&ctx, &sources())
    }

    fn names(env: &ResolvedEnv) -> Vec<&str> {
        env.vars.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn env_from_applies_prefix_and_env_overrides_in_place() {
        let env = resolve(
            json!({"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                {"secretRef": {"name": "creds"}}],
                "env": [{"name": "CFG_MODE", "value": "dev"}, {"name": "EXTRA", "value": "1"}]}),
            json!({"enableServiceLinks": false}),
        )
        .unwrap();
        assert_eq!(env.get("CFG_MODE"), Some("dev"));
        assert_eq!(env.get("CFG_LEVEL"), Some("3"));
        assert_eq!(env.get("CFG_with space"), Some("ok"));
        assert_eq!(env.get("PASSWORD"), Some("hunter2"));
        assert_eq!(
            &names(&env)[..5],
            [
                "CFG_LEVEL",
                "CFG_MODE",
                "CFG_with space",
                "PASSWORD",
                "EXTRA"
            ]
        );
        assert_eq!(
            env.warnings,
            vec![EnvWarning::InvalidKeys {
                kind: "configMap",
                namespace: "shop".into(),
                name: "cfg".into(),
                keys: vec!["CFG_bad=key".into()],
            }]
        );
        assert_eq!(env.warnings[0].reason(), "InvalidEnvironmentVariableNames");
        assert_eq!(
            env.warnings[0].to_string(),
            "Keys [CFG_bad=key] from the EnvFrom configMap shop/cfg were skipped since they are considered invalid environment variable names."
        );
    }

    #[test]
    fn missing_objects_and_keys_follow_optional_semantics() {
        let cases = [
            (
                json!({"envFrom": [{"configMapRef": {"name": "nope", "optional": true}}]}),
                None,
            ),
            (
                json!({"envFrom": [{"configMapRef": {"name": "nope"}}]}),
                Some("configmap \"nope\" not found"),
            ),
            (
                json!({"envFrom": [{"secretRef": {"name": "nope"}}]}),
                Some("secret \"nope\" not found"),
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}]}),
                Some("couldn't find key NOPE in ConfigMap shop/cfg"),
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE", "optional": true}}}]}),
                None,
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "K", "optional": true}}}]}),
                None,
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "K"}}}]}),
                Some("configmap \"gone\" not found"),
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "NOPE"}}}]}),
                Some("couldn't find key NOPE in Secret shop/creds"),
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "NOPE", "optional": true}}}]}),
                None,
            ),
        ];
        for (mut c, want) in cases {
            c["name"] = json!("app");
            let got = resolve(c.clone(), json!({"enableServiceLinks": false}));
            match want {
                None => assert!(got.unwrap().get("A").is_none(), "{c}"),
                Some(msg) => assert_eq!(got.unwrap_err().to_string(), msg, "{c}"),
            }
        }
    }

    #[test]
    fn env_values_expand_earlier_vars_and_service_links() {
        let env = resolve(
            json!({"name": "app", "env": [
                {"name": "A", "value": "x"},
                {"name": "B", "value": "$(A)-$(LATER)-$$(A)-$(REDIS_MAIN_SERVICE_HOST)"},
                {"name": "LATER", "value": "y"},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                {"name": "EMPTY"}
            ]}),
            json!({}),
        )
        .unwrap();
        assert_eq!(env.get("B"), Some("x-$(LATER)-$(A)-10.43.0.20"));
        assert_eq!(env.get("KEY"), Some("hunter2"));
        assert_eq!(env.get("MODE"), Some("prod"));
        assert_eq!(env.get("EMPTY"), Some(""));
        assert_eq!(
            &names(&env)[..6],
            ["A", "B", "LATER", "KEY", "MODE", "EMPTY"]
        );
    }

    #[test]
    fn field_refs_resolve_pod_facts() {
        let cases = [
            ("metadata.name", "web-1"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "uid-1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['note']", "a \"b\""),
            ("metadata.labels", "app=\"web\"\ntier=\"front\""),
            ("spec.nodeName", "node-1"),
            ("spec.serviceAccountName", "builder"),
            ("status.hostIP", "192.168.1.10"),
            ("status.hostIPs", "192.168.1.10"),
            ("status.podIP", "10.42.0.7"),
            ("status.podIPs", "10.42.0.7,fd00::7"),
        ];
        for (path, want) in cases {
            let env = resolve(
                json!({"name": "app", "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]}),
                json!({"enableServiceLinks": false}),
            )
            .unwrap();
            assert_eq!(env.get("V"), Some(want), "{path}");
        }
        let err = resolve(
            json!({"name": "app", "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "unsupported fieldPath: spec.bogus");
    }

    #[test]
    fn resource_field_refs_divide_round_up_and_default_to_allocatable() {
        let app = json!({"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}});
        let cases = [
            (json!({"resource": "limits.cpu"}), "1"),
            (json!({"resource": "limits.cpu", "divisor": "1m"}), "500"),
            (json!({"resource": "limits.memory"}), "8589934592"),
            (json!({"resource": "limits.memory", "divisor": "1Gi"}), "8"),
            (
                json!({"resource": "requests.memory", "divisor": "1Mi"}),
                "64",
            ),
            (
                json!({"resource": "requests.memory", "divisor": "1M"}),
                "68",
            ),
            (json!({"resource": "requests.cpu"}), "0"),
            (
                json!({"resource": "limits.memory", "containerName": "side", "divisor": "1Mi"}),
                "1024",
            ),
            (
                json!({"resource": "limits.cpu", "containerName": "side", "divisor": "1m"}),
                "4000",
            ),
        ];
        for (selector, want) in cases {
            let env = resolve(
                json!({"name": "app", "resources": app,
                    "env": [{"name": "V", "valueFrom": {"resourceFieldRef": selector}}]}),
                json!({"enableServiceLinks": false}),
            )
            .unwrap();
            assert_eq!(env.get("V"), Some(want), "{selector}");
        }
        let err = resolve(
            json!({"name": "app", "env": [{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported container resource : limits.gpu"
        );
    }

    #[test]
    fn service_links_follow_enable_service_links() {
        let with = resolve(json!({"name": "app"}), json!({})).unwrap();
        let want = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
            ("REDIS_MAIN_SERVICE_HOST", "10.43.0.20"),
            ("REDIS_MAIN_SERVICE_PORT", "6379"),
            ("REDIS_MAIN_PORT", "tcp://10.43.0.20:6379"),
        ];
        for (k, v) in want {
            assert_eq!(with.get(k), Some(v), "{k}");
        }
        assert!(with.get("HEADLESS_SERVICE_HOST").is_none());
        assert!(with.get("DB_SERVICE_HOST").is_none());
        let without =
            resolve(json!({"name": "app"}), json!({"enableServiceLinks": false})).unwrap();
        assert_eq!(without.get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert!(without.get("REDIS_MAIN_SERVICE_HOST").is_none());
        // A container's own definition wins over a service link.
        let own = resolve(
            json!({"name": "app", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "x"}]}),
            json!({}),
        )
        .unwrap();
        assert_eq!(
            own.vars
                .iter()
                .filter(|v| v.name == "KUBERNETES_SERVICE_HOST")
                .count(),
            1
        );
        assert_eq!(own.get("KUBERNETES_SERVICE_HOST"), Some("x"));
    }

    #[test]
    fn service_env_names_and_ipv6_urls() {
        let svcs = [service(
            "ns",
            "1st.svc-x",
            "fd00::1",
            json!([{"name": "web-ui", "port": 80, "protocol": "UDP"}]),
        )];
        let env = service_env("ns", true, &svcs);
        let get = |k: &str| env.iter().find(|v| v.name == k).map(|v| v.value.as_str());
        assert_eq!(get("_1ST_SVC_X_SERVICE_HOST"), Some("fd00::1"));
        assert_eq!(get("_1ST_SVC_X_SERVICE_PORT_WEB_UI"), Some("80"));
        assert_eq!(get("_1ST_SVC_X_PORT"), Some("udp://[fd00::1]:80"));
        assert_eq!(get("_1ST_SVC_X_PORT_80_UDP_ADDR"), Some("fd00::1"));
    }

    #[test]
    fn command_and_args_expand_against_the_environment() {
        let c: Container = serde_json::from_value(json!({"name": "app",
            "command": ["sh", "-c", "echo $(GREETING) $$(GREETING)"], "args": ["$(NAME)", "$(UNSET)"]}))
        .unwrap();
        let env = [
            EnvVar {
                name: "GREETING".into(),
                value: "hi".into(),
            },
            EnvVar {
                name: "NAME".into(),
                value: "bob".into(),
            },
        ];
        let (cmd, args) = expand_command_and_args(&c, &env);
        assert_eq!(cmd, ["sh", "-c", "echo hi $(GREETING)"]);
        assert_eq!(args, ["bob", "$(UNSET)"]);
    }
}
