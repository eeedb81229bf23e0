//! Authentication against the real binary: 401s for missing or bad credentials (with a Status
//! body), client certificates verified against the client CA, TokenRequest tokens checked
//! against the live ServiceAccount, TokenReview, bootstrap tokens, the static token file,
//! anonymous access, and the `default` ServiceAccount and `kube-root-ca.crt` controllers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{Value, json};

/// How curl presents itself.
enum Cred<'a> {
    None,
    Cert(&'a Path, &'a Path),
    Token(&'a str),
}

fn tls_dir(server: &TestServer) -> PathBuf {
    server.dir.path().join("data").join("server").join("tls")
}

fn admin(server: &TestServer) -> (PathBuf, PathBuf) {
    let tls = tls_dir(server);
    (tls.join("client-admin.crt"), tls.join("client-admin.key"))
}

/// One request with curl; returns the status code and the body as JSON (Null if not JSON).
fn curl(
    server: &TestServer,
    cred: Cred<'_>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(tls_dir(server).join("server-ca.crt"))
        .arg(format!("{}{path}", server.url()));
    match cred {
        Cred::None => {}
        Cred::Cert(cert, key) => {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        Cred::Token(t) => {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code: u16 = code.trim().parse().unwrap_or(0);
    assert!(
        code != 0,
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn as_admin(server: &TestServer, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (cert, key) = admin(server);
    curl(server, Cred::Cert(&cert, &key), method, path, body)
}

fn assert_unauthorized(got: (u16, Value), case: &str) {
    assert_eq!(got.0, 401, "{case}: {}", got.1);
    assert_eq!(got.1["kind"], "Status", "{case}");
    assert_eq!(got.1["reason"], "Unauthorized", "{case}");
    assert_eq!(got.1["message"], "Unauthorized", "{case}");
    assert_eq!(got.1["code"], 401, "{case}");
}

fn whoami(server: &TestServer, cred: Cred<'_>) -> (u16, Value) {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    curl(
        server,
        cred,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(&review),
    )
}

fn write_pem(dir: &Path, name: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

/// A client certificate for `user`, valid between the given years, signed by the cluster's
/// client CA (or self-signed when `foreign`).
fn client_cert(
    server: &TestServer,
    user: &str,
    years: (i32, i32),
    foreign: bool,
) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "dev");
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = if foreign {
        params.self_signed(&key).unwrap()
    } else {
        let tls = tls_dir(server);
        let ca_key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(tls.join("client-ca.key")).unwrap())
                .unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            &std::fs::read_to_string(tls.join("client-ca.crt")).unwrap(),
            ca_key,
        )
        .unwrap();
        params.signed_by(&key, &issuer).unwrap()
    };
    (cert.pem(), key.serialize_pem())
}

#[test]
fn requests_without_credentials_get_a_401_status_and_health_stays_public() {
    let server = TestServer::start();
    for path in ["/api/v1/namespaces", "/apis", "/api", "/openapi/v2"] {
        assert_unauthorized(curl(&server, Cred::None, "GET", path, None), path);
    }
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, _) = curl(&server, Cred::None, "GET", path, None);
        assert_eq!(code, 200, "{path}");
    }
    assert_unauthorized(
        curl(
            &server,
            Cred::Token("not-a-known-token"),
            "GET",
            "/api/v1/namespaces",
            None,
        ),
        "unknown token",
    );
}

#[test]
fn client_certificates_are_verified_against_the_client_ca() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (good_cert, good_key) = client_cert(&server, "alice", (2020, 2100), false);
    let (expired_cert, expired_key) = client_cert(&server, "alice", (2020, 2021), false);
    let (foreign_cert, foreign_key) = client_cert(&server, "mallory", (2020, 2100), true);
    let good = write_pem(dir.path(), "good", &good_cert, &good_key);
    let expired = write_pem(dir.path(), "expired", &expired_cert, &expired_key);
    let foreign = write_pem(dir.path(), "foreign", &foreign_cert, &foreign_key);

    let (code, body) = whoami(&server, Cred::Cert(&good.0, &good.1));
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        json!(["dev", "system:authenticated"])
    );
    let credential =
        body["status"]["userInfo"]["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    assert!(credential.starts_with("X509SHA256="), "{body}");

    for (case, (cert, key)) in [("expired", &expired), ("another CA", &foreign)] {
        assert_unauthorized(
            curl(
                &server,
                Cred::Cert(cert, key),
                "GET",
                "/api/v1/namespaces",
                None,
            ),
            case,
        );
        // Health stays reachable even with a bad certificate.
        assert_eq!(
            curl(&server, Cred::Cert(cert, key), "GET", "/healthz", None).0,
            200,
            "{case}"
        );
    }
}

fn request_token(server: &TestServer, ns: &str, sa: &str, spec: Value) -> (u16, Value) {
    let body =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    as_admin(
        server,
        "POST",
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
        Some(&body),
    )
}

fn review(server: &TestServer, token: &str, audiences: &[&str]) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": token, "audiences": audiences}});
    let (code, body) = as_admin(
        server,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(&body),
    );
    assert_eq!(code, 201, "{body}");
    body["status"].clone()
}

#[test]
fn token_request_tokens_work_until_the_service_account_is_deleted() {
    let server = TestServer::start();
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}});
    let (code, created) = as_admin(
        &server,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        Some(&sa),
    );
    assert_eq!(code, 201, "{created}");
    let sa_uid = created["metadata"]["uid"].as_str().unwrap().to_owned();

    let (code, tr) = request_token(&server, "default", "app", json!({}));
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        tr["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert!(tr["status"]["expirationTimestamp"].is_string());
    let token = tr["status"]["token"].as_str().unwrap().to_owned();

    // The token is a working bearer token.
    let (code, me) = whoami(&server, Cred::Token(&token));
    assert_eq!(code, 201, "{me}");
    let user = &me["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:app");
    assert_eq!(user["uid"], sa_uid.as_str());
    assert_eq!(
        user["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert!(
        user["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .unwrap()
            .starts_with("JTI=")
    );
    // Authenticated as the account, which RBAC gives nothing: 403 naming it, not 401.
    let (code, body) = curl(
        &server,
        Cred::Token(&token),
        "GET",
        "/api/v1/namespaces/default/pods",
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("User \"system:serviceaccount:default:app\" cannot list"),
        "{body}"
    );

    // Real kubectl with --token.
    let kubectl = common::tool("kubectl-1.35");
    {
        let out = Command::new(&kubectl)
            .args([
                "--server",
                &server.url(),
                "--token",
                &token,
                "--kubeconfig",
                "/dev/null",
            ])
            .arg(format!(
                "--certificate-authority={}",
                tls_dir(&server).join("server-ca.crt").display()
            ))
            .args(["auth", "whoami"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("system:serviceaccount:default:app"));
    }

    // TokenReview agrees.
    let good = review(&server, &token, &[]);
    assert_eq!(good["authenticated"], true, "{good}");
    assert_eq!(
        good["user"]["username"],
        "system:serviceaccount:default:app"
    );
    assert_eq!(
        good["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let other_audience = review(&server, &token, &["vault"]);
    assert_ne!(other_audience["authenticated"], true, "{other_audience}");

    // Tampered, wrong audience, or too short a lifetime.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1].insert(0, 'e');
    let tampered = parts.join(".");
    assert_unauthorized(
        curl(
            &server,
            Cred::Token(&tampered),
            "GET",
            "/api/v1/namespaces",
            None,
        ),
        "tampered",
    );
    assert_ne!(review(&server, &tampered, &[])["authenticated"], true);
    let (code, vault) = request_token(&server, "default", "app", json!({"audiences": ["vault"]}));
    assert_eq!(code, 201, "{vault}");
    let vault_token = vault["status"]["token"].as_str().unwrap();
    assert_unauthorized(
        curl(
            &server,
            Cred::Token(vault_token),
            "GET",
            "/api/v1/namespaces",
            None,
        ),
        "wrong audience",
    );
    assert_eq!(
        review(&server, vault_token, &["vault"])["authenticated"],
        true
    );
    let (code, short) = request_token(&server, "default", "app", json!({"expirationSeconds": 60}));
    assert_eq!(code, 422, "{short}");
    assert!(
        short["message"]
            .as_str()
            .unwrap()
            .contains("may not specify a duration less than 10 minutes"),
        "{short}"
    );
    let (code, missing) = request_token(&server, "default", "nobody", json!({}));
    assert_eq!(code, 404, "{missing}");

    // Deleting the ServiceAccount invalidates its tokens.
    let (code, _) = as_admin(
        &server,
        "DELETE",
        "/api/v1/namespaces/default/serviceaccounts/app",
        None,
    );
    assert_eq!(code, 200);
    assert_unauthorized(
        curl(
            &server,
            Cred::Token(&token),
            "GET",
            "/api/v1/namespaces",
            None,
        ),
        "deleted service account",
    );
    let gone = review(&server, &token, &[]);
    assert_ne!(gone["authenticated"], true);
    assert!(
        gone["error"].as_str().unwrap().contains("not found"),
        "{gone}"
    );
}

#[test]
fn bootstrap_tokens_authenticate_until_they_expire() {
    let server = TestServer::start();
    let secret = |id: &str, expiration: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
               "metadata": {"name": format!("bootstrap-token-{id}")},
               "stringData": {"token-id": id, "token-secret": "0123456789abcdef",
                              "usage-bootstrap-authentication": "true", "expiration": expiration,
                              "auth-extra-groups": "system:bootstrappers:worker"}})
    };
    for (id, expiration) in [
        ("abcdef", "2100-01-01T00:00:00Z"),
        ("zzzzzz", "2020-01-01T00:00:00Z"),
    ] {
        let (code, body) = as_admin(
            &server,
            "POST",
            "/api/v1/namespaces/kube-system/secrets",
            Some(&secret(id, expiration)),
        );
        assert_eq!(code, 201, "{body}");
    }
    let (code, me) = whoami(&server, Cred::Token("abcdef.0123456789abcdef"));
    assert_eq!(code, 201, "{me}");
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:bootstrap:abcdef"
    );
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!([
            "system:bootstrappers",
            "system:bootstrappers:worker",
            "system:authenticated"
        ])
    );
    for (case, token) in [
        ("expired", "zzzzzz.0123456789abcdef"),
        ("wrong secret", "abcdef.0123456789abcdee"),
        ("unknown id", "qqqqqq.0123456789abcdef"),
    ] {
        assert_unauthorized(
            curl(
                &server,
                Cred::Token(token),
                "GET",
                "/api/v1/namespaces",
                None,
            ),
            case,
        );
    }
}

#[test]
fn static_token_file_and_anonymous_access() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(&file, "s3cr3t,carol,uid-7,\"ops,dev\"\n").unwrap();
    let server = TestServer::start_with(&[
        "--token-auth-file",
        file.to_str().unwrap(),
        "--anonymous-auth",
    ]);
    let (code, me) = whoami(&server, Cred::Token("s3cr3t"));
    assert_eq!(code, 201, "{me}");
    assert_eq!(me["status"]["userInfo"]["username"], "carol");
    assert_eq!(me["status"]["userInfo"]["uid"], "uid-7");
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!(["ops", "dev", "system:authenticated"])
    );
    // Anonymous requests get through authentication as system:anonymous; RBAC then decides
    // (the default policy lets them read only version and health information).
    let (code, anon) = whoami(&server, Cred::None);
    assert_eq!(code, 403, "{anon}");
    assert!(
        anon["message"]
            .as_str()
            .unwrap_or("")
            .contains("User \"system:anonymous\" cannot create resource \"selfsubjectreviews\""),
        "{anon}"
    );
    // A bad credential is never downgraded to anonymous.
    assert_unauthorized(
        curl(
            &server,
            Cred::Token("wrong"),
            "GET",
            "/api/v1/namespaces",
            None,
        ),
        "bad token with anonymous on",
    );
}

fn wait_for(server: &TestServer, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = as_admin(server, "GET", path, None);
        if code == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not appear: {code} {body}\n{}",
            common::tail(&server.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn new_namespaces_get_the_default_account_and_the_root_ca() {
    let server = TestServer::start();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}});
    assert_eq!(
        as_admin(&server, "POST", "/api/v1/namespaces", Some(&ns)).0,
        201
    );
    let sa = wait_for(&server, "/api/v1/namespaces/fresh/serviceaccounts/default");
    let cm = wait_for(
        &server,
        "/api/v1/namespaces/fresh/configmaps/kube-root-ca.crt",
    );
    let ca = std::fs::read_to_string(tls_dir(&server).join("server-ca.crt")).unwrap();
    assert_eq!(cm["data"]["ca.crt"], ca.as_str());
    assert!(
        cm["metadata"]["annotations"]["kubernetes.io/description"]
            .as_str()
            .unwrap()
            .starts_with("Contains a CA bundle")
    );
    // The system namespaces have them too.
    wait_for(
        &server,
        "/api/v1/namespaces/kube-system/serviceaccounts/default",
    );
    wait_for(
        &server,
        "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
    );

    // Deleted or changed, they come back.
    assert_eq!(
        as_admin(
            &server,
            "DELETE",
            "/api/v1/namespaces/fresh/serviceaccounts/default",
            None
        )
        .0,
        200
    );
    let again = wait_for(&server, "/api/v1/namespaces/fresh/serviceaccounts/default");
    assert_ne!(again["metadata"]["uid"], sa["metadata"]["uid"]);
    let mut changed = cm.clone();
    changed["data"]["ca.crt"] = json!("tampered");
    assert_eq!(
        as_admin(
            &server,
            "PUT",
            "/api/v1/namespaces/fresh/configmaps/kube-root-ca.crt",
            Some(&changed)
        )
        .0,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = wait_for(
            &server,
            "/api/v1/namespaces/fresh/configmaps/kube-root-ca.crt",
        );
        if body["data"]["ca.crt"] == ca.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "root CA was not restored");
        std::thread::sleep(Duration::from_millis(100));
    }
}
