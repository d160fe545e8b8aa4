//! Credentials reach the pods only through `secretKeyRef`s; the chart refuses values that cannot
//! work; the token key list for rotation; the broker's TLS files.

use super::*;

/// Variables that carry a credential: each must come from the Secret, under this key.
const SECRET_ENV: &[(&str, &str)] = &[
    ("FITLINK_AMQP_URL", "amqp-url"),
    ("FITLINK_TOKEN_KEY", "token-key"),
    ("FITLINK_TOKEN_KEYS", "token-keys"),
    ("FITLINK_GOOGLE_CLIENT_SECRET", "google-client-secret"),
    ("FITLINK_FITBIT_CLIENT_SECRET", "fitbit-client-secret"),
    ("FITLINK_GOOGLE_WEBHOOK_SECRET", "google-webhook-secret"),
    (
        "FITLINK_FITBIT_WEBHOOK_VERIFICATION_CODE",
        "fitbit-webhook-verification-code",
    ),
    ("FITLINK_CONSOLE_ADMIN_USER", "console-admin-user"),
    ("FITLINK_CONSOLE_ADMIN_PASSWORD", "console-admin-password"),
    ("FITLINK_OIDC_CLIENT_SECRET", "oidc-client-secret"),
];

#[test]
fn credentials_reach_the_pods_only_through_secret_key_refs() {
    for set in SETS {
        let (rendered, values) = (render(set), values(set));
        let secret = secret_name(&values);
        for d in rendered.of_kind("Deployment") {
            let what = format!("{set}: {}", name(d));
            for (var, entry) in env(d) {
                let known = SECRET_ENV.iter().find(|(v, _)| *v == var);
                let looks_secret = ["SECRET", "PASSWORD", "TOKEN_KEY", "AMQP_URL", "CODE"]
                    .iter()
                    .any(|w| var.contains(w));
                if let Some((_, key)) = known {
                    assert_eq!(
                        secret_ref(d, var),
                        Some((secret.as_str(), *key)),
                        "{what}: {var}"
                    );
                    assert!(
                        entry["value"].is_null(),
                        "{what}: {var} has a literal value"
                    );
                } else {
                    assert!(
                        !looks_secret,
                        "{what}: {var} looks like a credential: list it"
                    );
                }
                if var == "FITLINK_DATABASE_URL" && entry["value"].is_string() {
                    // Only a SQLite path may be a literal: it has no credential.
                    assert!(env_value(d, var).starts_with("sqlite://"), "{what}: {var}");
                }
                // No URL with user information anywhere in a literal.
                if let Some(v) = entry["value"].as_str() {
                    assert!(!(v.contains("://") && v.contains('@')), "{what}: {var}={v}");
                }
            }
            // Every role has the broker, read from the Secret (checked above when present).
            assert!(
                env(d).contains_key("FITLINK_AMQP_URL"),
                "{what}: no broker URL"
            );
        }
        if values["existingSecret"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            assert_eq!(
                rendered.of_kind("Secret").count(),
                0,
                "{set}: existingSecret is used as is"
            );
        }
    }

    // The chart's own Secret: every value set lands base64-encoded under its key, and no
    // placeholder credential appears as a literal anywhere in the rendered text.
    let set = "keda-off";
    let (rendered, values) = (render(set), values(set));
    let secret = rendered.get("Secret", &secret_name(&values));
    let camel = |key: &str| -> String {
        let mut parts = key.split('-');
        let mut out = parts.next().unwrap().to_string();
        for p in parts {
            out.push_str(&p[..1].to_uppercase());
            out.push_str(&p[1..]);
        }
        out
    };
    let mut checked = 0;
    for (_, key) in SECRET_ENV.iter().chain(&[("", "database-url")]) {
        let given = values["secrets"][camel(key).as_str()]
            .as_str()
            .unwrap_or("");
        let stored = &secret["data"][*key];
        if given.is_empty() {
            assert!(stored.is_null(), "{key}: not set, not written");
            continue;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(
                stored
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} missing from the Secret")),
            )
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), given, "{key}");
        assert!(
            !rendered.text.contains(given),
            "{key}'s value is a literal in a manifest"
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "the value set gives the chart's Secret credentials to check"
    );
}

#[test]
fn the_chart_refuses_to_render_without_credentials() {
    let err = render_with("keda-off", &["secrets.amqpUrl="])
        .err()
        .expect("no broker URL and no existingSecret must not render");
    assert!(err.contains("existingSecret"), "{err}");
    let err = render_with("keda-off", &["database.backend=postgres"])
        .err()
        .expect("PostgreSQL without a database URL must not render");
    assert!(err.contains("databaseUrl"), "{err}");
    let err = render_with("keda-off", &["secrets.tokenKeys=new\\,old"])
        .err()
        .expect("two token key settings must not render (the roles refuse them)");
    assert!(err.contains("tokenKey and secrets.tokenKeys"), "{err}");
}

/// Rotating the token key with the chart's Secret: `secrets.tokenKeys` instead of
/// `secrets.tokenKey` lands under `token-keys` alone, which every role that seals or opens
/// tokens reads as `FITLINK_TOKEN_KEYS`.
#[test]
fn a_key_list_for_rotation_replaces_the_single_key() {
    let values = values("keda-off");
    let rendered = render_with(
        "keda-off",
        &["secrets.tokenKey=", "secrets.tokenKeys=new-key\\,old-key"],
    )
    .unwrap_or_else(|e| panic!("helm template: {e}"));
    let secret = rendered.get("Secret", &secret_name(&values));
    assert!(secret["data"]["token-key"].is_null(), "no single key");
    let stored = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["token-keys"].as_str().expect("the key list"))
        .unwrap();
    assert_eq!(stored, b"new-key,old-key");
    for component in ["worker", "dispatcher", "console"] {
        for d in rendered.role(component) {
            assert_eq!(
                secret_ref(d, "FITLINK_TOKEN_KEYS"),
                Some((secret_name(&values).as_str(), "token-keys")),
                "{component}"
            );
        }
    }
}

/// `broker.tls`: every role mounts the TLS Secret read-only and points the three
/// `FITLINK_AMQP_*_FILE` settings at its files; without it no role has them; a plain amqp://
/// URL with TLS files, which the roles would refuse, does not render.
#[test]
fn broker_tls_mounts_the_ca_and_client_certificate_in_every_role() {
    let files = [
        ("FITLINK_AMQP_CA_FILE", "/etc/fitlink/amqp-tls/ca.crt"),
        (
            "FITLINK_AMQP_CLIENT_CERT_FILE",
            "/etc/fitlink/amqp-tls/tls.crt",
        ),
        (
            "FITLINK_AMQP_CLIENT_KEY_FILE",
            "/etc/fitlink/amqp-tls/tls.key",
        ),
    ];
    let rendered = render("broker-tls");
    for d in rendered.of_kind("Deployment") {
        for (var, path) in files {
            assert_eq!(env_value(d, var), path, "{}", name(d));
        }
        let mount = seq(&container(d)["volumeMounts"])
            .iter()
            .find(|m| m["name"] == "amqp-tls")
            .unwrap_or_else(|| panic!("{}: no amqp-tls mount", name(d)));
        assert_eq!(str_at(mount, "mountPath"), "/etc/fitlink/amqp-tls");
        assert_eq!(mount["readOnly"], Value::Bool(true), "{}", name(d));
        let volume = seq(&d["spec"]["template"]["spec"]["volumes"])
            .iter()
            .find(|v| v["name"] == "amqp-tls")
            .unwrap_or_else(|| panic!("{}: no amqp-tls volume", name(d)));
        assert_eq!(str_at(&volume["secret"], "secretName"), "fitlink-amqp-tls");
    }
    for d in render("default").of_kind("Deployment") {
        for (var, _) in files {
            assert!(
                !env(d).contains_key(var),
                "{}: {var} without broker.tls",
                name(d)
            );
        }
    }
    let err = render_with("keda-off", &["broker.tls.secretName=fitlink-amqp-tls"])
        .err()
        .expect("TLS files with a plain amqp:// URL must not render");
    assert!(err.contains("use amqps://"), "{err}");
}
