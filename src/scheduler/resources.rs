//! Resource quantities and a pod's effective requests as the scheduler counts them; pure
//! arithmetic, never any I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Requests the scoring plugins assume for a container that sets none (upstream's
/// `DefaultMilliCPURequest` and `DefaultMemoryRequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Parses a Kubernetes quantity into thousandths of a unit, rounding up as `MilliValue` does.
/// Returns `None` for text that is not a quantity.
pub fn parse_milli(text: &str) -> Option<i64> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "." {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = 0;
    for b in digits.bytes() {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    // value = mantissa * 10^-scale * multiplier; milli = value * 1000.
    let mut numerator = mantissa.checked_mul(1000)?;
    let mut denominator: i128 = 10i128.checked_pow(u32::try_from(frac_part.len()).ok()?)?;
    let binary = |p: u32| 1024i128.checked_pow(p);
    let decimal = |p: i32| -> Option<(i128, i128)> {
        if p >= 0 {
            Some((10i128.checked_pow(p as u32)?, 1))
        } else {
            Some((1, 10i128.checked_pow(p.unsigned_abs())?))
        }
    };
    let (mul, div) = match suffix {
        "" => (1, 1),
        "Ki" => (binary(1)?, 1),
        "Mi" => (binary(2)?, 1),
        "Gi" => (binary(3)?, 1),
        "Ti" => (binary(4)?, 1),
        "Pi" => (binary(5)?, 1),
        "Ei" => (binary(6)?, 1),
        "n" => decimal(-9)?,
        "u" => decimal(-6)?,
        "m" => decimal(-3)?,
        "k" => decimal(3)?,
        "M" => decimal(6)?,
        "G" => decimal(9)?,
        "T" => decimal(12)?,
        "P" => decimal(15)?,
        "E" => decimal(18)?,
        exp if exp.starts_with(['e', 'E']) => decimal(exp.get(1..)?.parse::<i32>().ok()?)?,
        _ => return None,
    };
    numerator = numerator.checked_mul(mul)?;
    denominator = denominator.checked_mul(div)?;
    let mut milli = numerator / denominator;
    if numerator % denominator != 0 {
        milli += 1;
    }
    let milli = if negative { -milli } else { milli };
    i64::try_from(milli).ok()
}

/// A quantity as whole units, rounded up (`Quantity.Value`).
pub fn parse_value(text: &str) -> Option<i64> {
    let milli = parse_milli(text)?;
    Some(milli.div_euclid(1000) + i64::from(milli.rem_euclid(1000) != 0))
}

/// The resources a node offers or a pod asks for, in the units upstream's scheduler counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended and hugepages resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...), whole units.
    pub scalar: BTreeMap<String, i64>,
}

/// True for resource names the scheduler counts as scalars: extended resources (with a domain
/// outside `kubernetes.io`), `hugepages-*` and `attachable-volumes-*`.
pub fn is_scalar_resource(name: &str) -> bool {
    if name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") {
        return true;
    }
    match name.split_once('/') {
        Some((domain, _)) => {
            !(domain == "kubernetes.io" || domain.ends_with(".kubernetes.io"))
                || domain.starts_with("requests.")
        }
        None => false,
    }
}

impl Resources {
    /// Resources from a `ResourceList` (node allocatable or container requests).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        r.add_list(list);
        r
    }

    pub fn add_list(&mut self, list: &BTreeMap<String, Quantity>) {
        for (name, q) in list {
            match name.as_str() {
                "cpu" => self.milli_cpu += parse_milli(&q.0).unwrap_or(0),
                "memory" => self.memory += parse_value(&q.0).unwrap_or(0),
                "ephemeral-storage" => self.ephemeral_storage += parse_value(&q.0).unwrap_or(0),
                "pods" => self.pods += parse_value(&q.0).unwrap_or(0),
                other if is_scalar_resource(other) => {
                    *self.scalar.entry(other.to_string()).or_default() +=
                        parse_value(&q.0).unwrap_or(0)
                }
                _ => {}
            }
        }
    }

    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }
}

fn requests_of(c: &Container) -> Option<&BTreeMap<String, Quantity>> {
    c.resources.as_ref().and_then(|r| r.requests.as_ref())
}

/// True for an init container that keeps running beside the app containers (a sidecar).
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's requests as upstream computes them: the larger of the app containers' sum (plus
/// sidecars) and each init container's request (plus the sidecars started before it), plus the
/// pod overhead. `pods` is always 1.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    pod_requests_with(spec, |c| {
        requests_of(c).map(Resources::from_list).unwrap_or_default()
    })
}

/// CPU and memory requests with upstream's non-zero defaults for containers that set none, which
/// the scoring plugins use so that request-less pods still spread.
pub fn pod_non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let r = pod_requests_with(spec, |c| {
        let list = requests_of(c);
        let get = |name: &str| list.and_then(|l| l.get(name));
        Resources {
            milli_cpu: get("cpu")
                .and_then(|q| parse_milli(&q.0))
                .unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
            memory: get("memory")
                .and_then(|q| parse_value(&q.0))
                .unwrap_or(DEFAULT_MEMORY_REQUEST),
            ..Resources::default()
        }
    });
    (r.milli_cpu, r.memory)
}

fn pod_requests_with(spec: &PodSpec, of: impl Fn(&Container) -> Resources) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&of(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = of(c);
        if is_sidecar(c) {
            sidecars.add(&own);
            total.add(&own);
            init_max.max_with(&sidecars);
        } else {
            let mut with_sidecars = sidecars.clone();
            with_sidecars.add(&own);
            init_max.max_with(&with_sidecars);
        }
    }
    total.max_with(&init_max);
    if let Some(overhead) = &spec.overhead {
        total.add_list(overhead);
    }
    total.pods = 1;
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_to_milli_units_rounding_up() {
        let cases = [
            ("100m", Some(100)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("0.0001", Some(1)),
            ("2k", Some(2_000_000)),
            ("1Ki", Some(1_024_000)),
            ("1Gi", Some(1_073_741_824_000)),
            ("1e3", Some(1_000_000)),
            ("1E-3", Some(1)),
            ("500n", Some(1)),
            ("-1", Some(-1000)),
            ("", None),
            ("abc", None),
            ("1Zi", None),
            ("1..2", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_milli(text), want, "{text}");
        }
        assert_eq!(parse_value("1.5"), Some(2));
        assert_eq!(parse_value("128Mi"), Some(134_217_728));
        assert_eq!(parse_value("1m"), Some(1));
    }

    #[test]
    fn scalar_resources_are_extended_and_hugepages() {
        let cases = [
            ("nvidia.com/gpu", true),
            ("hugepages-2Mi", true),
            ("cpu", false),
            ("kubernetes.io/foo", false),
            ("example.kubernetes.io/foo", false),
            ("memory", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_scalar_resource(name), want, "{name}");
        }
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_requests_take_the_larger_of_containers_and_init_containers_plus_overhead() {
        let cases = [
            (
                json!({"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "200m", "nvidia.com/gpu": "1"}}}]}),
                (300, 1_048_576, 1),
            ),
            (
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                       "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}),
                (1000, 0, 0),
            ),
            (
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                       "initContainers": [
                           {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
                           {"name": "i", "resources": {"requests": {"cpu": "350m"}}}]}),
                (650, 0, 0),
            ),
            (
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                       "overhead": {"cpu": "50m"}}),
                (150, 0, 0),
            ),
        ];
        for (s, (cpu, mem, gpu)) in cases {
            let r = pod_requests(&spec(s.clone()));
            assert_eq!(r.milli_cpu, cpu, "{s}");
            assert_eq!(r.memory, mem, "{s}");
            assert_eq!(
                r.scalar.get("nvidia.com/gpu").copied().unwrap_or(0),
                gpu,
                "{s}"
            );
            assert_eq!(r.pods, 1);
        }
    }

    #[test]
    fn non_zero_requests_default_missing_cpu_and_memory() {
        let s = spec(
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        assert_eq!(
            pod_non_zero_requests(&s),
            (1100, 2 * DEFAULT_MEMORY_REQUEST)
        );
    }
}
