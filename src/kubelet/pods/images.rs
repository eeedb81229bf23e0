//! A container's image as containerd has it: the normalised name, the image ID (config digest),
//! the runtime config (entrypoint, cmd, env, user, working dir) and the top layer's chain ID the
//! rootfs snapshot is prepared from. Reads the content store only; never pulls or unpacks
//! (that is [`super::pull`]).

use serde::Deserialize;

use crate::kubelet::oci::ImageConfig;
use crate::kubelet::registry::manifest::{Document, Platform, is_index, select_manifest};
use crate::kubelet::registry::reference::Reference;
use crate::kubelet::runtime::RuntimeClient;
use crate::kubelet::runtime::archive::chain_ids;
use crate::kubelet::runtime::import::LABEL_PINNED;

use super::Error;

/// An image present in containerd, resolved for this node's platform.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalImage {
    /// The normalised name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// `sha256:<config digest>`, the API's `imageID` (upstream shows the repo digest or ID).
    pub image_id: String,
    pub config: ImageConfig,
    /// The chain ID of the top layer: the snapshot parent of a container's rootfs.
    pub chain_id: String,
    /// Imported from the images directory (never pulled again nor garbage-collected).
    pub pinned: bool,
}

#[derive(Deserialize, Default)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<RuntimeConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The name containerd records an image under (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize(image: &str) -> Result<String, Error> {
    Reference::parse_normalized(image.trim())
        .map(|r| r.with_default_tag().to_string())
        .map_err(|source| Error::InvalidImageName {
            image: image.to_string(),
            message: crate::kubelet::registry::reference::invalid_image_name_message(
                image, &source,
            ),
        })
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8], digest: &str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::ImageContent {
        digest: digest.to_string(),
        source,
    })
}

/// The image named `name` (normalised) if containerd has it; `None` when it is absent or its
/// content is incomplete (not unpackable).
pub async fn resolve(client: &RuntimeClient, name: &str) -> Result<Option<LocalImage>, Error> {
    let Some(image) = client.get_image(name).await.map_err(Error::runtime)? else {
        return Ok(None);
    };
    let pinned = image.labels.contains_key(LABEL_PINNED);
    let Some(target) = image.target else {
        return Ok(None);
    };
    let mut digest = target.digest.clone();
    let mut media_type = target.media_type.clone();
    // Through at most two index levels to this platform's manifest.
    for _ in 0..3 {
        let bytes = match client.read_content(&digest).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(Error::runtime(e)),
        };
        let doc: Document = parse(&bytes, &digest)?;
        let kind = if media_type.is_empty() {
            doc.media_type.clone()
        } else {
            media_type.clone()
        };
        if is_index(&kind) || (!doc.manifests.is_empty() && doc.config.is_none()) {
            let Some(d) = select_manifest(&doc.manifests, &Platform::host()) else {
                return Err(Error::NoPlatform {
                    image: name.to_string(),
                });
            };
            digest = d.digest.clone();
            media_type = d.media_type.clone();
            continue;
        }
        let Some(config) = doc.config else {
            return Ok(None);
        };
        let blob = match client.read_content(&config.digest).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(Error::runtime(e)),
        };
        let cfg: ConfigBlob = parse(&blob, &config.digest)?;
        let chain = chain_ids(&cfg.rootfs.unwrap_or_default().diff_ids);
        let Some(chain_id) = chain.last().cloned() else {
            return Ok(None);
        };
        let rc = cfg.config.unwrap_or_default();
        return Ok(Some(LocalImage {
            name: name.to_string(),
            image_id: config.digest.clone(),
            config: ImageConfig {
                user: rc.user.unwrap_or_default(),
                env: rc.env.unwrap_or_default(),
                entrypoint: rc.entrypoint.unwrap_or_default(),
                cmd: rc.cmd.unwrap_or_default(),
                working_dir: rc.working_dir.unwrap_or_default(),
            },
            chain_id,
            pinned,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_like_containerd() {
        let cases = [
            ("busybox", Some("docker.io/library/busybox:latest")),
            ("quay.io/a/b:1", Some("quay.io/a/b:1")),
            ("Bad Name", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).ok().as_deref(), want, "{input}");
        }
    }

    #[test]
    fn image_config_blob_parses_docker_fields() {
        let blob = br#"{"config":{"User":"1000","Env":["A=1"],"Cmd":["sh"],"WorkingDir":"/w"},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let cfg: ConfigBlob = parse(blob, "sha256:x").unwrap();
        let rc = cfg.config.unwrap();
        assert_eq!(rc.user.as_deref(), Some("1000"));
        assert_eq!(rc.cmd.unwrap(), vec!["sh".to_string()]);
        assert_eq!(cfg.rootfs.unwrap().diff_ids.len(), 1);
    }
}
