//! `payments [serve|migrate]`: runs the payments service, or only its migrations.

fn main() -> anyhow::Result<()> {
    shared_kernel::startup::main(
        payments::CONTEXT,
        payments::Settings::from_env,
        payments::migrate,
        |s| Box::pin(payments::build(s)),
    )
}
