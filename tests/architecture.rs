//! The dependency rules of ARCHITECTURE.md, checked by reading `use` lines and paths.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of non-test code in the files under `dir` that mention any of `forbidden`.
fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    if root.is_dir() {
        rust_files(&root, &mut files);
    } else {
        files.push(root.with_extension("rs"));
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for bad in forbidden {
                if l.contains(bad) {
                    out.push(format!("{}:{}: {}", f.display(), i + 1, l));
                }
            }
        }
    }
    out
}

#[test]
fn the_store_knows_nothing_about_kubernetes() {
    let bad = offenders(
        "store",
        &[
            "crate::apiserver",
            "kube::",
            "k8s_openapi",
            "crate::auth",
            "crate::client",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn only_the_api_server_and_the_composition_root_use_the_store() {
    for dir in ["auth", "cli", "client", "controllers"] {
        let bad = offenders(dir, &["crate::store"]);
        assert!(bad.is_empty(), "{dir}: {bad:#?}");
    }
}

#[test]
fn the_cli_holds_no_logic() {
    let bad = offenders(
        "cli",
        &[
            "crate::apiserver",
            "crate::store",
            "crate::server",
            "crate::auth",
            "tokio::",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn controllers_use_the_api_only_through_the_client() {
    let bad = offenders(
        "controllers",
        &[
            "crate::apiserver::handlers",
            "crate::apiserver::storage",
            "crate::store",
            "crate::apiserver::ApiServer",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}
