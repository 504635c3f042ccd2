//! `settlement [serve|migrate]`: runs the settlement service, or only its migrations.

use settlement::{migrate, Application, Settings};

fn main() -> anyhow::Result<()> {
    shared_kernel::telemetry::init(settlement::CONTEXT);
    shared_kernel::http::init_metrics();
    let settings = Settings::from_env()?;
    match std::env::args().nth(1).as_deref() {
        Some("migrate") => migrate(&settings),
        None | Some("serve") => actix_web::rt::System::new().block_on(async move {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(())
        }),
        Some(other) => anyhow::bail!("unknown command {other:?}; use 'serve' or 'migrate'"),
    }
}
