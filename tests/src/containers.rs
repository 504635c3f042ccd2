//! The test infrastructure as containers (ADR 0022): PostgreSQL, RabbitMQ and OpenBao from
//! the local images `cargo xtask images` builds, started through testcontainers with their
//! own wait conditions, every published port bound to 127.0.0.1. Each container carries
//! the run's label, so `cargo xtask test` can remove whatever a killed run left behind.

use std::time::Duration;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::{ContainerRequest, GenericImage, ImageExt};

/// The label every container of a test run carries; its value is the run's id.
pub const RUN_LABEL: &str = "org.fleet-cards.run";
/// The variable `cargo xtask test` sets to the run's id.
pub const RUN_ID_VAR: &str = "FLEET_TEST_RUN_ID";
const STARTUP: Duration = Duration::from_secs(120);

/// This run's id: what `cargo xtask test` chose, else `adhoc`.
pub fn run_id() -> String {
    std::env::var(RUN_ID_VAR)
        .ok()
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "adhoc".to_owned())
}

/// A network name of this run (the reaper removes networks by this prefix).
pub fn network_name() -> String {
    format!(
        "fleet-{}-{}",
        run_id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Publishes each `(host port, container port)` on 127.0.0.1 only, and no other port
/// (testcontainers would publish every exposed port on every address); host port 0 lets
/// the engine choose one.
pub fn on_loopback(
    image: impl Into<ContainerRequest<GenericImage>>,
    ports: &[(u16, u16)],
) -> ContainerRequest<GenericImage> {
    // The modifier runs last, over testcontainers' own port settings.
    image
        .into()
        .with_host_config_modifier(loopback_only(ports.to_vec()))
}

fn loopback_only(ports: Vec<(u16, u16)>) -> impl Fn(&mut HostConfig) + Send + Sync + 'static {
    move |config| {
        config.publish_all_ports = Some(false);
        config.port_bindings = Some(
            ports
                .iter()
                .map(|(host, inside)| {
                    let binding = PortBinding {
                        host_ip: Some("127.0.0.1".to_owned()),
                        host_port: Some(if *host == 0 {
                            String::new()
                        } else {
                            host.to_string()
                        }),
                    };
                    (format!("{inside}/tcp"), Some(vec![binding]))
                })
                .collect(),
        );
    }
}

fn labelled(image: GenericImage) -> ContainerRequest<GenericImage> {
    image
        .with_label(RUN_LABEL, run_id())
        .with_startup_timeout(STARTUP)
}

/// PostgreSQL 15 (trust authentication, logical decoding), ready when it says so.
pub fn postgres() -> ContainerRequest<GenericImage> {
    labelled(
        GenericImage::new("localhost/fleet-postgres", "15")
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr(
                "database system is ready to accept connections",
            )),
    )
}

/// RabbitMQ 3 (guest may connect from outside), ready when its startup is complete.
pub fn rabbitmq() -> ContainerRequest<GenericImage> {
    labelled(
        GenericImage::new("localhost/fleet-rabbitmq", "3")
            .with_exposed_port(5672.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Server startup complete")),
    )
}

/// An OpenBao development server whose root token is `token` (given by the environment,
/// never on a command line), ready when it says it is unsealed.
pub fn openbao(token: &str) -> ContainerRequest<GenericImage> {
    labelled(
        GenericImage::new("localhost/fleet-openbao", "dev")
            .with_exposed_port(8200.tcp())
            .with_wait_for(WaitFor::message_on_either_std(
                "Development mode should NOT be used",
            )),
    )
    .with_env_var("VAULT_DEV_ROOT_TOKEN_ID", token)
}
