//! The deployment files: `docker-compose.yml` is valid YAML describing the production-like
//! stack, and `config/production.toml` is a configuration billpush accepts. (No Docker engine
//! runs where the tests do, so the stack itself is not started here.)

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
    assert!(compose["services"]["rabbitmq"]["image"].as_str().unwrap().contains("management"));
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

#[test]
fn the_production_configuration_is_accepted() {
    let config = Config::load(Some(&root().join("config/production.toml"))).unwrap();
    assert_eq!(config.gateway.kind, GatewayKind::Http);
    assert_eq!(config.gateway.workers, 2);
    assert!(config.queue.url.starts_with("amqp://"));
    assert!(config.database.url.starts_with("postgres://"));
    config.settings().unwrap();
}
