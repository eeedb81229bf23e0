//! `/etc/skiff/config.yaml`: keys are long flag names; values become flags placed before the
//! command line's own, so flags given on the command line win for single values (as in k3s).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Cli;

const DEFAULT_CONFIG: &str = "/etc/skiff/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("config file {path} must be a mapping of flag names to values")]
    NotAMapping { path: PathBuf },
    #[error(
        "config file {path}: key {key:?} has a value that is not a string, number, boolean or list of them"
    )]
    BadValue { path: PathBuf, key: String },
}

/// Returns `argv` with the config file's settings inserted after the subcommand, and the keys it
/// ignored because the subcommand has no such flag (the caller logs them once logging is set up).
pub fn args_with_config_file(
    argv: Vec<OsString>,
) -> Result<(Vec<OsString>, Vec<String>), ConfigFileError> {
    let Some(sub_pos) = argv
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|p| p + 1)
    else {
        return Ok((argv, Vec::new()));
    };
    let sub = argv[sub_pos].to_string_lossy().to_string();
    let cmd = Cli::command();
    let Some(sub_cmd) = cmd.find_subcommand(&sub) else {
        return Ok((argv, Vec::new()));
    };
    if sub_cmd
        .get_arguments()
        .all(|a| a.get_long() != Some("config"))
    {
        return Ok((argv, Vec::new()));
    }
    let (path, explicit) = match explicit_config(&argv[sub_pos + 1..]) {
        Some(p) => (p, true),
        None => match std::env::var_os("SKIFF_CONFIG_FILE") {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok((argv, Vec::new()));
        }
        Err(source) => return Err(ConfigFileError::Read { path, source }),
    };
    let known: Vec<String> = sub_cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let (flags, ignored) = flags_from_yaml(&path, &text, &known)?;
    let mut out = Vec::with_capacity(argv.len() + flags.len());
    out.extend_from_slice(&argv[..=sub_pos]);
    out.extend(flags.into_iter().map(OsString::from));
    out.extend_from_slice(&argv[sub_pos + 1..]);
    Ok((out, ignored))
}

fn explicit_config(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" || a == "-c" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

fn flags_from_yaml(
    path: &Path,
    text: &str,
    known: &[String],
) -> Result<(Vec<String>, Vec<String>), ConfigFileError> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|source| ConfigFileError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    let map = match doc {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => return Ok((Vec::new(), Vec::new())),
        _ => {
            return Err(ConfigFileError::NotAMapping {
                path: path.to_path_buf(),
            });
        }
    };
    let mut flags = Vec::new();
    let mut ignored = Vec::new();
    for (k, v) in map {
        let Some(key) = k.as_str().map(str::to_string) else {
            return Err(ConfigFileError::NotAMapping {
                path: path.to_path_buf(),
            });
        };
        // k3s allows `key+: value` to append to list flags; we treat it like `key`.
        let name = key.trim_end_matches('+').to_string();
        if name == "config" || !known.contains(&name) {
            ignored.push(key);
            continue;
        }
        let bad = || ConfigFileError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
        };
        match v {
            serde_yaml::Value::Bool(true) => flags.push(format!("--{name}")),
            serde_yaml::Value::Bool(false) => {}
            serde_yaml::Value::Sequence(items) => {
                for item in items {
                    flags.push(format!("--{name}={}", scalar(&item).ok_or_else(bad)?));
                }
            }
            other => flags.push(format!("--{name}={}", scalar(&other).ok_or_else(bad)?)),
        }
    }
    Ok((flags, ignored))
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["data-dir", "tls-san", "disable-agent", "https-listen-port"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn yaml_keys_become_flags_and_unknown_keys_are_reported() {
        let text = "data-dir: /tmp/x\ntls-san:\n  - a.example\n  - 10.0.0.1\ndisable-agent: true\nhttps-listen-port: 7443\ndisable: traefik\n";
        let (flags, ignored) = flags_from_yaml(Path::new("c.yaml"), text, &known()).unwrap();
        assert_eq!(
            flags,
            vec![
                "--data-dir=/tmp/x",
                "--tls-san=a.example",
                "--tls-san=10.0.0.1",
                "--disable-agent",
                "--https-listen-port=7443"
            ]
        );
        assert_eq!(ignored, vec!["disable"]);
    }

    #[test]
    fn a_config_that_is_not_a_mapping_is_an_error() {
        assert!(matches!(
            flags_from_yaml(Path::new("c.yaml"), "- a\n- b\n", &known()),
            Err(ConfigFileError::NotAMapping { .. })
        ));
        assert!(matches!(
            flags_from_yaml(Path::new("c.yaml"), "a: [\n", &known()),
            Err(ConfigFileError::Parse { .. })
        ));
    }

    #[test]
    fn command_line_flags_come_after_config_flags() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, "https-listen-port: 7443\n").unwrap();
        let argv: Vec<OsString> = [
            "skiff",
            "server",
            "--config",
            cfg.to_str().unwrap(),
            "--https-listen-port",
            "8443",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let (args, _) = args_with_config_file(argv).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        assert_eq!(args[2], "--https-listen-port=7443");
        assert_eq!(args.last().unwrap(), "8443");
    }
}
