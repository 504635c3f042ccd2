//! `cargo xtask audit verify <context>`: checks the hash chain of a context's audit log
//! and names the first record where it breaks (exit status 1).
//!
//! Reads `--database-url`, else `<CONTEXT>__DATABASE__URL` (or `FLEET__DATABASE__URL`),
//! else the development database.

use anyhow::Context;
use diesel::Connection;
use shared_kernel::audit;
use shared_kernel::config::Env;

const CONTEXTS: [&str; 3] = ["accounts", "payments", "settlement"];

pub fn verify(context: &str, database_url: Option<&str>) -> anyhow::Result<()> {
    anyhow::ensure!(
        CONTEXTS.contains(&context),
        "unknown context {context:?}; use one of {CONTEXTS:?}"
    );
    let url = database_url
        .map(str::to_owned)
        .or_else(|| Env::new(context).get("DATABASE", "URL"))
        .unwrap_or_else(crate::dev::dev_database_url);
    let mut conn = diesel::PgConnection::establish(&url).context("connecting to PostgreSQL")?;
    let records = audit::store::all(&mut conn, context)
        .with_context(|| format!("reading {context}.audit_events"))?;
    match audit::verify(&records) {
        Ok((count, head)) => {
            println!("{context}: {count} audit records, chain intact, head {head}");
            Ok(())
        }
        Err(broken) => anyhow::bail!("{context}: audit chain broken: {broken}"),
    }
}
