//! `cargo xtask projections rebuild <context> <projection>`: rebuilds a consumer's
//! projection from its producer's retained event history. The consumer's projection is
//! reset (its versions and its inbox entries for those event types), then the producer's
//! newest event of each subject is sent straight to the consumer's queue, where the
//! running consumer applies it as usual. Live events may flow meanwhile: snapshots
//! apply by sequence, so the newest wins whatever the order.
//!
//! Reads `<CONTEXT>__DATABASE__URL` (or `FLEET__DATABASE__URL`, else the development
//! database) for each context, and `FLEET__AMQP__URL` / `FLEET__AMQP__PREFIX`.

use shared_kernel::amqp::{Broker, Topology};
use shared_kernel::config::Env;
use shared_kernel::replay;
use shared_kernel::secrets::Secret;

fn database_url(context: &str) -> String {
    Env::new(context)
        .get("DATABASE", "URL")
        .unwrap_or_else(crate::dev::dev_database_url)
}

pub fn rebuild(context: &str, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        context == "payments",
        "{context} keeps no projection of other contexts' events (payments does: accounts, cards)"
    );
    let projection = payments::store::projection::projection(name).ok_or_else(|| {
        let names: Vec<&str> = payments::store::projection::PROJECTIONS
            .iter()
            .map(|p| p.name)
            .collect();
        anyhow::anyhow!("payments has no projection {name:?}; it has {names:?}")
    })?;
    let env = Env::new(context);
    let amqp = env
        .get("AMQP", "URL")
        .unwrap_or_else(|| crate::dev::LOCAL_AMQP_URL.to_owned());
    let prefix = env.get("AMQP", "PREFIX").unwrap_or_default();
    let consumer = shared_kernel::db::command_pool(&database_url(context), payments::SCHEMA, 1)?;
    let producer = shared_kernel::db::command_pool(
        &database_url(projection.producer),
        projection.producer,
        1,
    )?;
    let queue = Topology::new(&prefix).queue(context, projection.producer);
    let broker = Broker::new(Secret::new(amqp));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Everything that can fail first (the history, the broker), and only then the reset:
    // a rebuild that cannot replay leaves the projection as it was.
    let (events, channel) = runtime.block_on(async {
        let events = replay::read_history(&producer, projection.event_types).await?;
        let channel = replay::channel(&broker).await?;
        anyhow::Ok((events, channel))
    })?;
    let mut conn = consumer.get()?;
    payments::store::projection::reset(&mut conn, projection)?;
    drop(conn);
    runtime.block_on(replay::send_all(&channel, &queue, &events))?;
    let sent = events.len();
    eprintln!(
        "payments/{name}: reset, and {sent} event(s) of {} replayed to {queue}",
        projection.producer
    );
    Ok(())
}
