//! The deployment files: `docker-compose.yml` is valid YAML describing the production-like
//! stack with a health check on every service, `config/production.toml` is a configuration
//! billpush accepts, and the alert rules and dashboard of `deploy/` name only metrics billpush
//! exports. (No Docker engine runs where the tests do, so the stack itself is not started here.)

use std::path::Path;

use billpush::config::{Config, GatewayKind};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_compose_file_describes_the_whole_stack() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let services = compose["services"].as_mapping().expect("services");
    for service in ["postgres", "rabbitmq", "mock-gateway", "billpush", "scheduler", "worker-1", "worker-2"] {
        assert!(services.contains_key(service), "service {service}");
    }
    let commands: Vec<String> = ["billpush", "worker-1", "worker-2", "scheduler"]
        .iter()
        .map(|s| {
            compose["services"][*s]["command"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert!(commands[0].ends_with("serve"));
    assert!(commands[1].contains("worker") && commands[2].contains("worker") && commands[3].ends_with("scheduler"));
    assert!(commands.iter().all(|c| c.contains("config/production.toml")));
}

fn compose() -> serde_norway::Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let mut compose: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    compose
}

#[test]
fn every_service_of_the_compose_file_has_a_health_check_and_billpush_checks_itself() {
    let compose = compose();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let test = service["healthcheck"]["test"].as_sequence().unwrap_or_else(|| panic!("{name} has no health check"));
        let test: Vec<&str> = test.iter().map(|v| v.as_str().unwrap()).collect();
        if service["image"].as_str() == Some("billpush:latest") {
            assert_eq!(&test[..2], ["CMD", "billpush"], "{name} checks itself with billpush healthcheck");
            assert!(test.contains(&"healthcheck"), "{name}: {test:?}");
        }
    }
    for service in ["prometheus", "grafana"] {
        assert!(compose["services"][service]["image"].is_string(), "{service} is started with the stack");
    }
    assert!(compose["services"]["rabbitmq"]["image"].as_str().unwrap().starts_with("rabbitmq:4"));
    assert!(compose["services"]["rabbitmq"]["ports"].is_null(), "the management UI is not published by default");
    assert!(compose["services"]["billpush"]["env_file"].as_str() == Some(".env"), "secrets come from .env");
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    for variable in ["POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "BILLPUSH_DATABASE__URL", "BILLPUSH_QUEUE__URL"] {
        assert!(example.contains(&format!("{variable}=")), "{variable} in .env.example");
    }
    let ignored = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == ".env"), ".env is never committed");
}

/// `--profile cluster` adds two RabbitMQ nodes that join the first through the peer discovery
/// of deploy/rabbitmq/cluster.conf; the nodes share one Erlang cookie, billpush waits for all
/// three, and .env.example shows `queue.url` listing them.
#[test]
fn the_cluster_profile_makes_rabbitmq_three_nodes_billpush_is_given() {
    let compose = compose();
    let services = &compose["services"];
    let nodes = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"];
    let conf = std::fs::read_to_string(root().join("deploy/rabbitmq/cluster.conf")).unwrap();
    assert!(conf.contains("cluster_formation.peer_discovery_backend = classic_config"));
    for (i, node) in nodes.iter().enumerate() {
        let service = &services[*node];
        assert_eq!(service["hostname"].as_str(), Some(*node), "{node} has a fixed node name");
        assert_eq!(service["image"], services["rabbitmq"]["image"], "{node}");
        assert_eq!(service["environment"], services["rabbitmq"]["environment"], "{node} shares the cookie");
        assert!(conf.contains(&format!("classic_config.nodes.{} = rabbit@{node}\n", i + 1)), "{node} in cluster.conf");
        if i > 0 {
            let profiles: Vec<&str> =
                service["profiles"].as_sequence().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
            assert_eq!(profiles, ["cluster"], "{node} starts with the cluster profile only");
            let mounts: Vec<&str> =
                service["volumes"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert!(mounts.contains(&"./deploy/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro"));
            assert!(!mounts.iter().any(|m| m.starts_with("rabbitmq:")), "{node} has a data volume of its own");
            assert_eq!(service["depends_on"]["rabbitmq"]["condition"].as_str(), Some("service_healthy"));
            for billpush in ["billpush", "scheduler", "worker-1", "worker-2"] {
                let wait = &services[billpush]["depends_on"][*node];
                assert_eq!(wait["condition"].as_str(), Some("service_healthy"), "{billpush} waits for {node}");
                assert_eq!(wait["required"].as_bool(), Some(false), "{billpush} runs without the profile too");
            }
        } else {
            assert!(service["profiles"].is_null(), "the first node starts in every profile");
        }
    }
    let cookie = services["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].as_str().unwrap();
    assert!(cookie.contains("-setcookie ${RABBITMQ_ERLANG_COOKIE:?"), "{cookie}");
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    assert!(example.contains("RABBITMQ_ERLANG_COOKIE="));
    let cluster_url = example.lines().find(|l| l.contains("rabbitmq-3:5672")).expect("a queue.url for the cluster");
    let url = cluster_url.trim_start_matches("# ").strip_prefix("BILLPUSH_QUEUE__URL=").unwrap();
    let hosts: Vec<&str> = url.split(',').map(|u| u.split('@').nth(1).unwrap().split(':').next().unwrap()).collect();
    assert_eq!(hosts, nodes);
}

/// The `billpush_…` names in `text`, without a histogram's `_bucket`, `_sum` or `_count`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("billpush_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        names.push(base.to_string());
    }
    names
}

#[test]
fn alerts_and_the_dashboard_name_only_metrics_billpush_exports() {
    let exported = billpush::api::METRIC_NAMES;
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let rules: serde_norway::Value = serde_norway::from_str(&alerts).unwrap();
    let rules = rules["groups"][0]["rules"].as_sequence().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["BillpushPushStalled", "BillpushFailureRateHigh", "BillpushQueueBackingUp", "BillpushReceiptsMissing"]
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("deploy/grafana/dashboards/billpush.json")).unwrap())
            .unwrap();
    let mut expressions: Vec<String> = rules.iter().map(|r| r["expr"].as_str().unwrap().to_string()).collect();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            expressions.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(expressions.len() >= 14);
    for expression in &expressions {
        let names = metric_names(expression);
        assert!(!names.is_empty(), "{expression}");
        for name in names {
            assert!(exported.contains(&name.as_str()), "{name} in {expression:?} is not a billpush metric");
        }
    }
    // And every metric the code records is in the list.
    for file in ["src/api/receipts.rs", "src/app.rs", "src/push/mod.rs"] {
        let code = std::fs::read_to_string(root().join(file)).unwrap();
        for recorded in code.split("metrics::").skip(1).filter(|c| c.starts_with(['c', 'g', 'h'])) {
            if let Some(name) = metric_names(recorded.split(')').next().unwrap()).first() {
                assert!(exported.contains(&name.as_str()), "{file} records {name}, which METRIC_NAMES lacks");
            }
        }
    }
}

#[test]
fn the_production_configuration_is_accepted() {
    let config = Config::load(Some(&root().join("config/production.toml"))).unwrap();
    assert_eq!(config.gateway.kind, GatewayKind::Http);
    assert_eq!(config.gateway.workers, 2);
    assert!(config.queue.url.starts_with("amqp://"));
    assert!(config.database.url.starts_with("postgres://"));
    config.settings().unwrap();
}
