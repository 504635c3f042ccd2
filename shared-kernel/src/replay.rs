//! Replaying a producer's retained history into one consumer's queue (a projection
//! rebuild): the events go through the default exchange straight to that queue, so
//! no other subscriber sees them again, and are applied by the consumer's usual path.

use crate::amqp::{confirm_channel, send_to_queue, Broker};
use crate::db::PgPool;
use lapin::BasicProperties;

/// Publishes the newest retained event of each subject among `event_types` from the
/// outbox behind `pool` to `queue`, confirmed. Returns how many were sent.
pub async fn history_to_queue(
    pool: &PgPool,
    broker: &Broker,
    queue: &str,
    event_types: &[&str],
) -> anyhow::Result<usize> {
    let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
    let events = crate::db::run(pool, move |conn| {
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        crate::outbox::history(conn, &types).map_err(crate::db::db_problem)
    })
    .await
    .map_err(|p| anyhow::anyhow!("reading the retained history: {p}"))?;
    let channel = confirm_channel(broker).await?;
    for event in &events {
        let props = BasicProperties::default()
            .with_content_type("application/cloudevents+json".into())
            .with_delivery_mode(2)
            .with_message_id(event.id.to_string().as_str().into());
        send_to_queue(&channel, queue, &serde_json::to_vec(event)?, props).await?;
    }
    let _ = channel.close(200, "replayed".into()).await;
    Ok(events.len())
}
