//! The console and the portal are served on their ports.

use super::*;

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
