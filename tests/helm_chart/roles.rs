//! Every role is there with its command, probes, security and ops port; writers per results
//! partition (a volume on SQLite); KEDA scales the workers.

use super::*;

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
