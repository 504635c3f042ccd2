//! Replaying a producer's retained history into one consumer's queue (a projection
//! rebuild): the events go through the default exchange straight to that queue, so
//! no other subscriber sees them again, and are applied by the consumer's usual path.

use crate::amqp::{confirm_channel, send_to_queue, Broker};
use crate::db::PgPool;
use crate::event::CloudEvent;
use lapin::Channel;

/// The newest retained event of each subject among `event_types`, from the outbox
/// behind `pool`.
pub async fn read_history(pool: &PgPool, event_types: &[&str]) -> anyhow::Result<Vec<CloudEvent>> {
    let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
    crate::db::run(pool, move |conn| {
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        crate::outbox::history(conn, &types).map_err(crate::db::db_problem)
    })
    .await
    .map_err(|p| anyhow::anyhow!("reading the retained history: {p}"))
}

/// A channel to send a replay on (publisher confirms on).
pub async fn channel(broker: &Broker) -> anyhow::Result<Channel> {
    confirm_channel(broker).await
}

/// Sends `events` to `queue`, each confirmed by the broker.
pub async fn send_all(channel: &Channel, queue: &str, events: &[CloudEvent]) -> anyhow::Result<()> {
    for event in events {
        let props =
            crate::outbox::message_properties(&event.id.to_string(), event.traceparent.as_deref());
        send_to_queue(channel, queue, &serde_json::to_vec(event)?, props).await?;
    }
    Ok(())
}
