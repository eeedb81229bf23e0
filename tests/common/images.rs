//! Test images built locally from busybox-static (no registry here): a rootfs with `/bin/busybox`
//! and applet symlinks, packed reproducibly as an OCI image layout or a docker-archive tarball
//! that `<data-dir>/agent/images/` (or `ctr images import`) accepts.
#![allow(dead_code)]

use std::path::Path;

use sha2::{Digest, Sha256};

/// Where busybox-static installs itself.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked into `/bin` of every test image.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "ls", "true", "false", "env", "id", "hostname", "httpd", "wget",
    "nc", "ps", "kill", "mkdir", "rm", "touch", "date", "head", "tail", "grep", "timeout", "dd",
    "tar",
];

fn digest(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The image's single layer: an uncompressed tar of the busybox rootfs, byte-for-byte
/// reproducible (sorted names, mtime 0, root owner).
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX).expect("busybox-static is installed at /bin/busybox");
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp", "var", "var/www"] {
        let mut h = header(
            tar::EntryType::Directory,
            if dir == "tmp" { 0o1777 } else { 0o755 },
            0,
        );
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .expect("dir entry");
    }
    let mut applets: Vec<&str> = APPLETS.to_vec();
    applets.sort_unstable();
    let mut entries: Vec<(String, Option<&[u8]>)> = vec![("bin/busybox".into(), Some(&busybox))];
    entries.extend(applets.into_iter().map(|a| (format!("bin/{a}"), None)));
    entries.push((
        "etc/passwd".into(),
        Some(b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
    ));
    entries.push(("etc/group".into(), Some(b"root:x:0:\nnobody:x:65534:\n")));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, data) in entries {
        match data {
            Some(d) => {
                let mode = if path == "bin/busybox" { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, d.len() as u64);
                b.append_data(&mut h, &path, d).expect("file entry");
            }
            None => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, &path, "busybox")
                    .expect("symlink entry");
            }
        }
    }
    b.into_inner().expect("layer tar")
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn config_json(layer: &[u8], cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        "history": [{"created_by": "skiff tests: busybox-static"}],
    }))
    .expect("config json")
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, path, data).expect("archive entry");
}

fn blob_path(data: &[u8]) -> String {
    format!("blobs/sha256/{}", &digest(data)[7..])
}

/// A busybox image as an OCI image layout tarball named `name` (through the
/// `io.containerd.image.name` annotation, which should be a full reference such as
/// `docker.io/library/busybox:latest`). `cmd` is the image's default command.
pub fn busybox_oci_archive(name: &str, cmd: &[&str]) -> Vec<u8> {
    let layer = busybox_layer();
    let config = config_json(&layer, cmd);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(&layer), "size": layer.len()}],
    }))
    .expect("manifest json");
    let tag = name
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.contains('/'))
        .unwrap_or("latest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
        }],
    }))
    .expect("index json");
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut blobs = [&layer, &config, &manifest];
    blobs.sort_by_key(|d| blob_path(d));
    for data in blobs {
        add_file(&mut b, &blob_path(data), data);
    }
    add_file(&mut b, "index.json", &index);
    b.into_inner().expect("oci archive")
}

/// The same image as a docker-archive (`docker save` layout) with `RepoTags` = `[name]`.
pub fn busybox_docker_archive(name: &str, cmd: &[&str]) -> Vec<u8> {
    let layer = busybox_layer();
    let config = config_json(&layer, cmd);
    let config_name = format!("{}.json", &digest(&config)[7..]);
    let layer_dir = &digest(&layer)[7..];
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [name],
        "Layers": [format!("{layer_dir}/layer.tar")],
    }]))
    .expect("manifest json");
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, &config_name, &config);
    add_file(&mut b, &format!("{layer_dir}/layer.tar"), &layer);
    add_file(&mut b, "manifest.json", &manifest);
    b.into_inner().expect("docker archive")
}

/// Writes an OCI busybox archive to `dir/file_name` (creating `dir`).
pub fn write_busybox_oci(dir: &Path, file_name: &str, name: &str, cmd: &[&str]) {
    std::fs::create_dir_all(dir).expect("images dir");
    std::fs::write(dir.join(file_name), busybox_oci_archive(name, cmd)).expect("write archive");
}

/// A minimal OCI runtime spec that runs `args` in a test image's rootfs (`PATH=/bin`, cgroup
/// `cgroup`), with runc's default namespaces, masked and read-only paths.
pub fn run_spec(cgroup: &str, args: &[&str]) -> oci_spec::runtime::Spec {
    use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, RootBuilder, Spec};
    let mut spec = Spec::default();
    let process = ProcessBuilder::default()
        .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .unwrap();
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(false)
            .build()
            .unwrap(),
    ));
    let linux = spec.linux().clone().unwrap_or_default();
    let linux = LinuxBuilder::default()
        .namespaces(linux.namespaces().clone().unwrap_or_default())
        .masked_paths(linux.masked_paths().clone().unwrap_or_default())
        .readonly_paths(linux.readonly_paths().clone().unwrap_or_default())
        .cgroups_path(cgroup)
        .build()
        .unwrap();
    spec.set_linux(Some(linux));
    spec
}
