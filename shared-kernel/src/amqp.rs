//! RabbitMQ plumbing: one shared connection per process that reconnects on demand,
//! topology declaration, and the consumer loop with manual acknowledgements.

use crate::event::CloudEvent;
use crate::secrets::Secret;
use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's connection to the broker, made (and remade) when a channel is asked for.
pub struct Broker {
    url: Secret<String>,
    conn: Mutex<Option<Connection>>,
}

impl Broker {
    pub fn new(url: Secret<String>) -> Arc<Self> {
        Arc::new(Self {
            url,
            conn: Mutex::new(None),
        })
    }

    /// A new channel on the live connection, reconnecting first when needed.
    /// Bounded by a timeout: a closed port never hangs the caller.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            if conn.status().connected() {
                return conn
                    .create_channel()
                    .await
                    .context("opening an AMQP channel");
            }
        }
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(self.url.expose(), ConnectionProperties::default()),
        )
        .await
        .context("timed out connecting to RabbitMQ")?
        .context("connecting to RabbitMQ")?;
        let channel = conn
            .create_channel()
            .await
            .context("opening an AMQP channel")?;
        *guard = Some(conn);
        Ok(channel)
    }

    pub async fn is_connected(&self) -> bool {
        self.conn
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| c.status().connected())
    }
}

/// Names of exchanges and queues, all under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
}

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// The topic exchange a context publishes its events to.
    pub fn exchange(&self, producer: &str) -> String {
        format!("{}{producer}.events", self.prefix)
    }
    /// The queue in which `consumer` receives `producer`'s events.
    pub fn queue(&self, consumer: &str, producer: &str) -> String {
        format!("{}{consumer}.{producer}-events", self.prefix)
    }
}

pub async fn declare_exchange(channel: &Channel, name: &str) -> anyhow::Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring exchange {name}"))
}

/// Declares a durable quorum queue bound to `exchange` for each routing key.
pub async fn declare_queue(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    keys: &[&str],
) -> anyhow::Result<()> {
    declare_exchange(channel, exchange).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .with_context(|| format!("declaring queue {queue}"))?;
    for key in keys {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding {queue} to {exchange} with {key}"))?;
    }
    Ok(())
}

/// What a handler says about an event it could not apply.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (database away, lock timeout): the message is returned to the queue.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help (unknown shape): the message is rejected.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Applies one event; runs on the blocking pool, so it may use diesel directly.
pub type Handler = Arc<dyn Fn(&CloudEvent) -> Result<(), HandlerError> + Send + Sync>;

/// A queue, and the producer's events it receives.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub queue: String,
    pub exchange: String,
    pub keys: Vec<String>,
}

/// Consumes a subscription forever: one message at a time (per-aggregate order is kept),
/// acked only after the handler committed. Declares its queue (idempotent) on every
/// (re)connect, and reconnects with backoff when the broker goes away.
pub async fn consume_forever(broker: Arc<Broker>, sub: Subscription, handler: Handler) {
    let mut backoff = Duration::from_millis(200);
    let queue = sub.queue.clone();
    loop {
        match consume_once(&broker, &sub, &handler).await {
            Ok(()) => tracing::warn!(queue, "consumer stream ended; reconnecting"),
            Err(e) => tracing::warn!(queue, error = %e, "consumer failed; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn consume_once(
    broker: &Broker,
    sub: &Subscription,
    handler: &Handler,
) -> anyhow::Result<()> {
    let queue = sub.queue.as_str();
    let channel = broker.channel().await?;
    let keys: Vec<&str> = sub.keys.iter().map(String::as_str).collect();
    declare_queue(&channel, queue, &sub.exchange, &keys).await?;
    channel.basic_qos(32, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    tracing::info!(queue, "consumer started");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let event: CloudEvent = match serde_json::from_slice(&delivery.data) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(queue, error = %e, "unparseable message rejected");
                metrics::counter!("consumer_messages_total", "queue" => queue.to_owned(), "outcome" => "rejected").increment(1);
                delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
                continue;
            }
        };
        let h = handler.clone();
        let ev = event.clone();
        let outcome = tokio::task::spawn_blocking(move || h(&ev))
            .await
            .unwrap_or_else(|e| Err(HandlerError::Transient(format!("handler panicked: {e}"))));
        match outcome {
            Ok(()) => {
                metrics::counter!("consumer_messages_total", "queue" => queue.to_owned(), "outcome" => "handled").increment(1);
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Err(HandlerError::Transient(reason)) => {
                tracing::warn!(queue, event_id = %event.id, event_type = %event.event_type, reason, "transient failure; requeued");
                metrics::counter!("consumer_messages_total", "queue" => queue.to_owned(), "outcome" => "requeued").increment(1);
                tokio::time::sleep(Duration::from_millis(500)).await;
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
            }
            Err(HandlerError::Permanent(reason)) => {
                tracing::error!(queue, event_id = %event.id, event_type = %event.event_type, reason, "permanent failure; rejected");
                metrics::counter!("consumer_messages_total", "queue" => queue.to_owned(), "outcome" => "rejected").increment(1);
                delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1.");
        assert_eq!(t.exchange("payments"), "t1.payments.events");
        assert_eq!(
            t.queue("settlement", "payments"),
            "t1.settlement.payments-events"
        );
    }
}
