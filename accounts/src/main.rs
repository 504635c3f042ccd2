//! `accounts [serve|migrate]`: runs the accounts service, or only its migrations.

fn main() -> anyhow::Result<()> {
    shared_kernel::startup::main(
        accounts::CONTEXT,
        accounts::Settings::from_env,
        accounts::migrate,
        |s| Box::pin(accounts::build(s)),
    )
}
