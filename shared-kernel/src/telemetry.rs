//! Structured JSON logs through tracing-subscriber.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the JSON log subscriber for a process; a second call is a no-op.
/// The level comes from `RUST_LOG` (default `info`, with lapin's own logs, which can
/// carry message bodies, at `error`).
pub fn init(context: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=error"));
    let installed = fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(context, "telemetry initialised");
    }
}
