use super::*;

use anyhow::Context as _;

const PASSWORD: &str = "s3cr3t-Pa55";

fn config_error(e: ConnectError) -> String {
    match e {
        ConnectError::Config(message) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn an_ip_address_host_is_kept_not_replaced_by_localhost() {
    let uri = parse(&format!("amqps://fitlink:{PASSWORD}@10.1.2.3:5671/%2f")).unwrap();
    assert_eq!(
        (uri.authority.host.as_str(), uri.authority.port),
        ("10.1.2.3", 5671)
    );
    assert_eq!(uri.scheme, AMQPScheme::AMQPS);
    assert_eq!(uri.vhost, "/");
    let uri = parse("amqp://guest:guest@[::1]/%2f").unwrap();
    assert_eq!(
        (uri.authority.host.as_str(), uri.authority.port),
        ("::1", 5672)
    );
    let uri = parse("amqps://broker.example/").unwrap();
    assert_eq!(
        (uri.authority.host.as_str(), uri.authority.port),
        ("broker.example", 5671)
    );
}

#[test]
fn a_url_that_does_not_parse_is_named_without_its_password() {
    for url in [
        format!("amqp:fitlink:{PASSWORD}@broker/%2f"),
        format!("amqp://fitlink:{PASSWORD}@broker:port/%2f"),
        format!("http://fitlink:{PASSWORD}@broker/"),
        format!("fitlink:{PASSWORD}"),
    ] {
        let message = config_error(parse(&url).unwrap_err());
        assert!(
            message.starts_with("FITLINK_AMQP_URL is not an AMQP URL"),
            "{message}"
        );
        assert!(!message.contains(PASSWORD), "{message}");
    }
}

#[test]
fn the_scrubber_removes_the_password_however_it_is_spelled() {
    let raw = "amqps://fitlink:p%40ss%2Fword@broker/%2f";
    let uri = parse(raw).unwrap();
    let scrubber = Scrubber::new(raw, &uri);
    let text = format!("failed: {raw} (p@ss/word, p%40ss%2Fword)");
    assert_eq!(
        scrubber.scrub(&text),
        "failed: [redacted] ([redacted], [redacted])"
    );
}

#[tokio::test]
async fn tls_files_with_a_plain_url_are_refused_before_connecting() {
    let args = BrokerArgs::new(format!("amqp://fitlink:{PASSWORD}@127.0.0.1:1/%2f"), "t");
    let tls = BrokerTlsArgs {
        amqp_ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    };
    let message = config_error(connect_with(&args, &tls, "test").await.unwrap_err());
    assert!(message.contains("use amqps://"), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");
}

#[test]
fn a_client_certificate_needs_its_key_and_the_files_must_hold_pem() {
    let dir = std::env::temp_dir().join(format!("fitlink-tls-unit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();

    let half = BrokerTlsArgs {
        amqp_client_cert_file: Some(not_pem.clone()),
        ..Default::default()
    };
    assert!(config_error(tls_config(&half).unwrap_err()).contains("needs both"));
    let half = BrokerTlsArgs {
        amqp_client_key_file: Some(not_pem.clone()),
        ..Default::default()
    };
    assert!(config_error(tls_config(&half).unwrap_err()).contains("needs both"));

    let no_certs = BrokerTlsArgs {
        amqp_ca_file: Some(not_pem.clone()),
        ..Default::default()
    };
    let message = config_error(tls_config(&no_certs).unwrap_err());
    assert!(
        message.contains("FITLINK_AMQP_CA_FILE") && message.contains("holds no PEM certificate"),
        "{message}"
    );
    let missing = BrokerTlsArgs {
        amqp_ca_file: Some(dir.join("missing.pem")),
        ..Default::default()
    };
    let message = config_error(tls_config(&missing).unwrap_err());
    assert!(
        message.starts_with("cannot read FITLINK_AMQP_CA_FILE"),
        "{message}"
    );

    assert_eq!(
        tls_config(&BrokerTlsArgs::default()).unwrap(),
        OwnedTLSConfig::default()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn only_settings_errors_stop_a_role_for_good() {
    let wrapped = |e: ConnectError| {
        Err::<(), _>(e)
            .context("connecting to RabbitMQ")
            .unwrap_err()
    };
    let at = || "broker:5671".to_owned();
    assert!(is_permanent_connect_error(&wrapped(
        ConnectError::NotAmqp { at: at() }
    )));
    assert!(is_permanent_connect_error(&wrapped(
        ConnectError::Certificate {
            at: at(),
            detail: String::new()
        }
    )));
    assert!(!is_permanent_connect_error(&wrapped(
        ConnectError::Unavailable {
            at: at(),
            detail: "connection refused".into()
        }
    )));
    assert!(!is_permanent_connect_error(&wrapped(
        ConnectError::Timeout { at: at(), hint: "" }
    )));
    assert!(!is_permanent_connect_error(&anyhow::anyhow!(
        "something else"
    )));
}

/// The heartbeat is what bounds every broker call but a publish; a URL that sets one (a test's
/// short one, an operator's) must keep it through our parse.
#[test]
fn a_heartbeat_in_the_url_is_kept() {
    let uri = parse("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=1").unwrap();
    assert_eq!(uri.query.heartbeat, Some(1));
    assert_eq!(parse("amqp://127.0.0.1/").unwrap().query.heartbeat, None);
}
