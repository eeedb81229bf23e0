//! Per-kind strategy for built-in types: defaulting, validation, create/update rules and field
//! selectors, as pure functions on JSON wire objects. Never touches the store or the network.

mod access;
pub mod defaults;
pub mod meta;
pub mod names;
pub mod quantity;
mod selectors;
mod strategy;

pub use defaults::apply_defaults;
pub use selectors::{selectable_fields, supported_fields};
pub use strategy::{pod_qos_class, prepare_for_create, prepare_for_update};
pub mod validation;

pub use validation::validate;
mod warnings;

pub use warnings::warnings;

/// The volume source keys of `VolumeSource`: exactly one may be set per volume, and a volume with
/// none of them is defaulted to an emptyDir.
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];
