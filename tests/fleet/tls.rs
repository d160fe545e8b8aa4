//! The broker over TLS: a fleet whose roles all connect with `amqps://` to a listener that
//! verifies client certificates, and the failures an operator meets (plain text at a TLS port,
//! TLS at a plain port, an untrusted CA, no client certificate, a wrong password, half a client
//! certificate), each a clear error within the connect timeout that never shows the password.
//!
//! The TLS listener is added at run time to the shared local RabbitMQ
//! (`rabbit_networking:start_ssl_listener` through `rabbitmqctl eval`), on a port of the test's
//! own, with a CA, broker and client certificates the test generates, and removed when the test
//! ends: the broker's configuration and the other tests' listeners are untouched. So is the
//! broker's user list: the test's user (with a password to look for in logs) is its own and
//! deleted afterwards.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fitlink::fleet::{self, FleetEnv};
use fitlink_shared::broker::CONNECT_TIMEOUT;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::harness::{BIN, Options, TestFleet};

#[tokio::test]
async fn a_fleet_syncs_over_tls_with_client_certificates_and_never_logs_the_password() {
    let listener = TlsListener::start();
    let user = BrokerUser::create();
    let pki = &listener.pki;
    let url = listener.url(&user.name, &user.password);
    let mut t = TestFleet::start(Options {
        participants: 3,
        days: 2,
        // The roles (processes) connect over TLS; the test's own in-process helpers keep the
        // plain listener of the same broker.
        env: vec![
            ("FITLINK_AMQP_URL", url.clone()),
            ("FITLINK_AMQP_CA_FILE", path_text(&pki.ca)),
            ("FITLINK_AMQP_CLIENT_CERT_FILE", path_text(&pki.client_cert)),
            ("FITLINK_AMQP_CLIENT_KEY_FILE", path_text(&pki.client_key)),
        ],
        ..Options::default()
    })
    .await;
    t.wait_all_synced_as_truth(180).await;

    // Every role held its connections over TLS, on the test's listener, as the test's user.
    let connections = listener.connections_of(&user.name);
    for role in [
        "writer-consume",
        "writer-publish",
        "worker-consume",
        "worker-publish",
    ] {
        assert!(
            connections
                .iter()
                .any(|c| c.client_properties.contains(&format!("\"fitlink-{role}\""))),
            "no fitlink-{role} connection over TLS: {connections:?}"
        );
    }
    assert!(
        connections.iter().all(|c| c.ssl && c.port == listener.port),
        "a connection of the fleet's user is not TLS on port {}: {connections:?}",
        listener.port
    );

    // An operator's command, with every log line lapin has, over TLS too.
    let out = command(&t.fleet.env, &["dlq", "list"], &[("RUST_LOG", "trace")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_password(
        &user.password,
        "fitlink dlq list (RUST_LOG=trace)",
        &stderr(&out),
    );

    for p in &t.fleet.processes {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(!log.is_empty(), "{} logged nothing", p.name);
        assert_no_password(&user.password, &p.name, &log);
    }
    t.finish().await;
}

#[tokio::test]
async fn connection_failures_name_the_problem_within_the_timeout_and_never_the_password() {
    let listener = TlsListener::start();
    let user = BrokerUser::create();
    let pki = &listener.pki;
    let at = format!("127.0.0.1:{}", listener.port);
    let tls_url = listener.url(&user.name, &user.password);
    let plain_url = format!("amqp://{}:{}@{at}/%2f", user.name, user.password);
    let ca = path_text(&pki.ca);
    let cert = path_text(&pki.client_cert);
    let key = path_text(&pki.client_key);
    let env = FleetEnv::simulated(
        &tls_url,
        format!("t-tls-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        "sqlite:///nonexistent/fitlink.db".to_owned(),
        "http://127.0.0.1:9",
    );
    let with_cert = [
        ("FITLINK_AMQP_CA_FILE", ca.as_str()),
        ("FITLINK_AMQP_CLIENT_CERT_FILE", cert.as_str()),
        ("FITLINK_AMQP_CLIENT_KEY_FILE", key.as_str()),
    ];
    let wrong_password = format!("amqps://{}:not-{}@{at}/%2f", user.name, user.password);
    let tls_at_plain_port = format!("amqps://{}:{}@127.0.0.1:5672/%2f", user.name, user.password);
    let bad_port = format!("amqp://{}:{}@{at}:x/%2f", user.name, user.password);
    // No `//`: lapin's own parse error quotes such a URL whole.
    let no_authority = format!("amqp:{}:{}@{at}/%2f", user.name, user.password);
    let cases = vec![
        Case(
            "a worker speaking plain AMQP to the TLS listener",
            vec!["worker"],
            vec![("FITLINK_AMQP_URL", plain_url.as_str())],
            format!(
                "the broker at {at} did not answer the AMQP handshake: is it a TLS listener? use amqps://"
            ),
        ),
        Case(
            "a worker with a wrong password",
            vec!["worker"],
            [("FITLINK_AMQP_URL", wrong_password.as_str())]
                .into_iter()
                .chain(with_cert)
                .collect(),
            format!("the broker at {at} refused the login"),
        ),
        Case(
            "a broker certificate signed by a CA not configured",
            vec!["dlq", "list"],
            vec![],
            format!("certificate verification failed for the broker at {at}"),
        ),
        Case(
            "no client certificate for a broker that requires one",
            vec!["dlq", "list"],
            vec![("FITLINK_AMQP_CA_FILE", ca.as_str())],
            // An alert ("refused the TLS connection") or, as often with TLS 1.3, a reset ("reset
            // the TLS connection"): both say what to set.
            "set FITLINK_AMQP_CLIENT_CERT_FILE".to_owned(),
        ),
        Case(
            "TLS at the plain listener",
            vec!["dlq", "list"],
            [("FITLINK_AMQP_URL", tls_at_plain_port.as_str())]
                .into_iter()
                .chain(with_cert)
                .collect(),
            "the broker at 127.0.0.1:5672 did not answer the TLS handshake".to_owned(),
        ),
        Case(
            "an amqp:// URL with TLS files set",
            vec!["dlq", "list"],
            [("FITLINK_AMQP_URL", plain_url.as_str())]
                .into_iter()
                .chain(with_cert)
                .collect(),
            "is a plain-text amqp:// URL".to_owned(),
        ),
        Case(
            "a client certificate without its key",
            vec!["dlq", "list"],
            vec![
                ("FITLINK_AMQP_CA_FILE", ca.as_str()),
                ("FITLINK_AMQP_CLIENT_CERT_FILE", cert.as_str()),
            ],
            "a client certificate needs both FITLINK_AMQP_CLIENT_CERT_FILE and FITLINK_AMQP_CLIENT_KEY_FILE".to_owned(),
        ),
        Case(
            "a URL with a port that is not a number",
            vec!["dlq", "list"],
            vec![("FITLINK_AMQP_URL", bad_port.as_str())],
            "FITLINK_AMQP_URL is not an AMQP URL".to_owned(),
        ),
        Case(
            "a URL without `//`",
            vec!["dlq", "list"],
            vec![("FITLINK_AMQP_URL", no_authority.as_str())],
            "FITLINK_AMQP_URL is not an AMQP URL".to_owned(),
        ),
    ];
    for Case(case, args, vars, expected) in cases {
        // Bounded by `command`: a wrong setting is not retried.
        let out = command(&env, &args, &vars).await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{case}: succeeded\n{err}");
        assert!(
            err.contains(&expected),
            "{case}: stderr does not say {expected:?}:\n{err}"
        );
        assert_no_password(&user.password, case, &err);
    }
}

/// A failure to provoke: what it is, the `fitlink` arguments, the environment over the
/// listener's `amqps://` URL, and what stderr must say.
struct Case<'a>(&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, String);

/// A CA, a broker certificate it signed (for 127.0.0.1 and localhost) and a client certificate
/// it signed, as PEM files in a directory the broker (user `rabbitmq`) can read.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn generate_pki() -> Pki {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("fitlink-tls-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    };

    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fitlink test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "localhost",
    );
    let (client_cert, client_key) = leaf(
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
        "fitlink test client",
    );
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server_cert),
        server_key: write("server.key", server_key),
        client_cert: write("client.pem", client_cert),
        client_key: write("client.key", client_key),
        _dir: dir,
    }
}

/// A TLS listener on the local RabbitMQ, on 127.0.0.1 and a port of its own, that requires a
/// client certificate signed by the test's CA (`verify_peer`, `fail_if_no_peer_cert`); stopped
/// on drop.
struct TlsListener {
    port: u16,
    pki: Pki,
}

impl TlsListener {
    fn start() -> Self {
        let pki = generate_pki();
        // A port that was free a moment ago may be taken by the time the broker binds it: try
        // a few.
        for _ in 0..5 {
            let port = fleet::free_port().unwrap();
            let started = rabbitmqctl_eval(&format!(
                r#"rabbit_networking:start_ssl_listener({{"127.0.0.1", {port}}}, [{{cacertfile, "{}"}}, {{certfile, "{}"}}, {{keyfile, "{}"}}, {{verify, verify_peer}}, {{fail_if_no_peer_cert, true}}], 1)."#,
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display(),
            ));
            if started.trim() == "ok" {
                return Self { port, pki };
            }
            eprintln!("TLS listener on {port} did not start: {started}");
        }
        panic!("could not start a TLS listener on the local RabbitMQ");
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!("amqps://{user}:{password}@127.0.0.1:{}/%2f", self.port)
    }

    /// The broker's connections of `user`.
    fn connections_of(&self, user: &str) -> Vec<BrokerConnection> {
        rabbitmqctl(&[
            "list_connections",
            "--quiet",
            "--no-table-headers",
            "user",
            "port",
            "ssl",
            "client_properties",
        ])
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (who, port, ssl, client_properties) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            (who == user).then(|| BrokerConnection {
                port: port.parse().unwrap_or(0),
                ssl: ssl == "true",
                client_properties: client_properties.to_owned(),
            })
        })
        .collect()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        rabbitmqctl_eval(&format!(
            r#"rabbit_networking:stop_tcp_listener({{"127.0.0.1", {}}})."#,
            self.port
        ));
    }
}

#[derive(Debug)]
struct BrokerConnection {
    port: u16,
    ssl: bool,
    /// What the client told the broker, its connection name (`fitlink-<purpose>`) among it.
    client_properties: String,
}

/// A broker user of the test's own, with a password distinctive enough to search logs for;
/// deleted on drop.
struct BrokerUser {
    name: String,
    password: String,
}

impl BrokerUser {
    fn create() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let user = Self {
            name: format!("t-tls-{}", &id[..12]),
            password: format!("pw{}Zq", &id[12..]),
        };
        rabbitmqctl(&["add_user", &user.name, &user.password]);
        rabbitmqctl(&["set_permissions", "-p", "/", &user.name, ".*", ".*", ".*"]);
        user
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["--quiet", "delete_user", &self.name])
            .output();
    }
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl (RabbitMQ's CLI) must be installed");
    assert!(
        out.status.success(),
        "rabbitmqctl {}: {}",
        args.first().unwrap_or(&""),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rabbitmqctl_eval(expression: &str) -> String {
    rabbitmqctl(&["--quiet", "eval", expression])
}

/// How long a failing command may take: the connect timeout and start-up. A worker whose
/// supervisor retried a wrong setting (as it retries a broker that is down) would run on.
const FAILURE_BOUND: Duration = Duration::from_secs(CONNECT_TIMEOUT.as_secs() + 10);

/// Runs `fitlink <args>` with the environment `env` and then `vars`; kills it after
/// [`FAILURE_BOUND`].
async fn command(env: &FleetEnv, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env_remove("FITLINK_AMQP_CA_FILE")
        .env_remove("FITLINK_AMQP_CLIENT_CERT_FILE")
        .env_remove("FITLINK_AMQP_CLIENT_KEY_FILE")
        .envs(env.vars())
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(FAILURE_BOUND, command.output())
        .await
        .unwrap_or_else(|_| panic!("fitlink {args:?} still running after {FAILURE_BOUND:?}"))
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_no_password(password: &str, what: &str, text: &str) {
    assert!(
        !text.contains(password),
        "{what} shows the broker password:\n{text}"
    );
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}
