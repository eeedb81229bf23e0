//! `skiff secrets-encrypt status|rotate|reencrypt`: asks the running server, prints what it says.

use skiff::apiserver::encryption::rotation::{EncryptionStatus, PATH_PREFIX};
use skiff::cli::{SecretsEncryptAction, SecretsEncryptArgs};

use crate::admin_api;

pub async fn run(args: SecretsEncryptArgs) -> anyhow::Result<()> {
    let (method, action) = match args.action {
        SecretsEncryptAction::Status => (http::Method::GET, "status"),
        SecretsEncryptAction::Rotate => (http::Method::POST, "rotate"),
        SecretsEncryptAction::Reencrypt => (http::Method::POST, "reencrypt"),
    };
    if action != "status" {
        eprintln!("secrets-encrypt {action}: working...");
    }
    let answer =
        admin_api::call_running(&args.data_dir, method, &format!("{PATH_PREFIX}/{action}")).await?;
    let status: EncryptionStatus = serde_json::from_value(answer)?;
    print!("{}", render(&status));
    Ok(())
}

/// The status report, laid out like k3s's.
fn render(s: &EncryptionStatus) -> String {
    let mut out = format!(
        "Encryption Status: {}\nCurrent Rotation Stage: {}\n",
        if s.enabled { "Enabled" } else { "Disabled" },
        s.stage
    );
    if !s.keys.is_empty() {
        out.push_str("\nActive  Key Type  Name\n------  --------  ----\n");
        for k in &s.keys {
            let active = if k.active { " *" } else { "" };
            out.push_str(&format!("{active:<8}{:<10}{}\n", k.key_type, k.name));
        }
    }
    if !s.secrets_by_key.is_empty() {
        out.push_str("\nSecrets  Stored Under\n-------  ------------\n");
        for (name, n) in &s.secrets_by_key {
            out.push_str(&format!("{n:<9}{name}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff::apiserver::encryption::KeyInfo;

    #[test]
    fn status_lists_keys_with_the_active_one_starred() {
        let s = EncryptionStatus {
            enabled: true,
            stage: "rotate".into(),
            keys: vec![
                KeyInfo {
                    active: true,
                    key_type: "AES-GCM".into(),
                    name: "new".into(),
                },
                KeyInfo {
                    active: false,
                    key_type: "AES-GCM".into(),
                    name: "old".into(),
                },
            ],
            secrets_by_key: [("old".to_owned(), 3)].into(),
        };
        let text = render(&s);
        assert!(
            text.starts_with("Encryption Status: Enabled\nCurrent Rotation Stage: rotate\n"),
            "{text}"
        );
        assert!(text.contains(" *      AES-GCM   new\n"), "{text}");
        assert!(text.contains("        AES-GCM   old\n"), "{text}");
        assert!(text.contains("3        old\n"), "{text}");
    }
}
