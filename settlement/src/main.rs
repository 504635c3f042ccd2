//! `settlement [serve|migrate]`: runs the settlement service, or only its migrations.

fn main() -> anyhow::Result<()> {
    shared_kernel::startup::main(
        settlement::CONTEXT,
        settlement::Settings::from_env,
        settlement::migrate,
        |s| Box::pin(settlement::build(s)),
    )
}
