//! RabbitMQ plumbing: one shared connection per process that reconnects on demand,
//! the topology (exchanges, queues, their retry and parking queues), and the consumer
//! loop with manual acknowledgements, retries and parking.

mod consumer;
pub mod parking;

pub use consumer::{consume_forever, Handler, HandlerError, Stop, Subscription};

use crate::secrets::Secret;
use anyhow::Context;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for a channel on a connection lapin still calls connected.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for an answer the broker owes (an ack's completion, a publish
/// confirm). lapin can leave such a promise pending for good when the connection dies at
/// that moment (an ack sent on a channel it already marked dead is dropped, not failed),
/// and a consumer waiting on it would stay silent forever (ADR 0009).
pub const BROKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// `answer`, or an error naming `what` once [`BROKER_ANSWER_TIMEOUT`] has passed.
pub async fn bounded<T, E>(
    what: &str,
    answer: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    bounded_by(BROKER_ANSWER_TIMEOUT, what, answer).await
}

/// [`bounded`] with its own limit.
pub async fn bounded_by<T, E>(
    limit: Duration,
    what: &str,
    answer: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, answer).await {
        Ok(result) => result.with_context(|| what.to_owned()),
        Err(_) => anyhow::bail!("no answer from the broker within {limit:?}: {what}"),
    }
}

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
                match bounded_by(
                    CHANNEL_TIMEOUT,
                    "opening an AMQP channel",
                    conn.create_channel(),
                )
                .await
                {
                    Ok(channel) => return Ok(channel),
                    // A connection that cannot open a channel is dropped and made anew.
                    Err(e) => {
                        tracing::warn!(error = %e, "the broker connection opens no channel; reconnecting");
                        *guard = None;
                    }
                }
            }
        }
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(self.url.expose(), ConnectionProperties::default()),
        )
        .await
        .context("timed out connecting to RabbitMQ")?
        .context("connecting to RabbitMQ")?;
        let channel = bounded_by(
            CHANNEL_TIMEOUT,
            "opening an AMQP channel",
            conn.create_channel(),
        )
        .await?;
        *guard = Some(conn);
        Ok(channel)
    }

    /// Whether the connection is up. Never waits: while another task is (re)connecting,
    /// the broker counts as not connected.
    pub fn is_connected(&self) -> bool {
        self.conn
            .try_lock()
            .is_ok_and(|c| c.as_ref().is_some_and(|c| c.status().connected()))
    }
}

/// Who consumes whose events: (consumer, producer). One queue each, plus its retry and
/// parking queues. The contracts' AsyncAPI document describes the same routes.
pub const ROUTES: &[(&str, &str)] = &[
    ("payments", "accounts"),
    ("settlement", "payments"),
    ("accounts", "settlement"),
];

/// The contexts that publish events, one topic exchange each.
pub const PRODUCERS: &[&str] = &["accounts", "payments", "settlement"];

/// Delays before the 1st, 2nd, 3rd… retry of a message that failed transiently; later
/// retries wait the last delay. Each delay is a queue with that TTL.
pub const RETRY_DELAYS_SECS: &[u32] = &[1, 5, 30];

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
    /// Every consumer queue of the system.
    pub fn queues(&self) -> Vec<String> {
        ROUTES.iter().map(|(c, p)| self.queue(c, p)).collect()
    }
    /// Every queue and exchange the system declares under this prefix.
    pub fn all_names(&self) -> (Vec<String>, Vec<String>) {
        let queues = self.queues().iter().flat_map(|q| family(q)).collect();
        let exchanges = PRODUCERS.iter().map(|p| self.exchange(p)).collect();
        (queues, exchanges)
    }
}

/// Where a message of `queue` waits before its retry after `delay_secs`.
pub fn retry_queue(queue: &str, delay_secs: u32) -> String {
    format!("{queue}.retry.{delay_secs}s")
}

/// Where the messages of `queue` that cannot be applied are parked.
pub fn parking_queue(queue: &str) -> String {
    format!("{queue}.parked")
}

/// `queue` with its retry and parking queues.
pub fn family(queue: &str) -> Vec<String> {
    let mut names = vec![queue.to_owned(), parking_queue(queue)];
    names.extend(RETRY_DELAYS_SECS.iter().map(|d| retry_queue(queue, *d)));
    names
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

/// How many times the broker redelivers a message (consumer crashes, channel losses)
/// before it gives up and dead-letters it to the parking queue.
pub const DELIVERY_LIMIT: i64 = 20;

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

async fn declare_plain(channel: &Channel, queue: &str, args: FieldTable) -> anyhow::Result<()> {
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
    Ok(())
}

/// Declares `queue` (durable, quorum) bound to `exchange` for each routing key, with its
/// family: a parking queue, which also receives what exceeds the delivery limit, and one
/// retry queue per delay, each dead-lettering back into `queue` through the default
/// exchange (so a retry reaches this consumer only, not every subscriber again).
pub async fn declare_queue(
    broker: &Broker,
    queue: &str,
    exchange: &str,
    keys: &[&str],
) -> anyhow::Result<()> {
    let channel = &broker.channel().await?;
    declare_exchange(channel, exchange).await?;
    let parked = parking_queue(queue);
    declare_plain(channel, &parked, quorum_args()).await?;
    for delay in RETRY_DELAYS_SECS {
        let mut args = quorum_args();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::from(*delay) * 1000),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.into()),
        );
        // A retry is not dropped if the queue it returns to cannot take it at that moment.
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        declare_plain(channel, &retry_queue(queue, *delay), args).await?;
    }
    let mut args = quorum_args();
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(parked.as_str().into()),
    );
    declare_main(broker, queue, args).await?;
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
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

/// Declares the main queue with its arguments. A queue made by an earlier version (a
/// quorum queue without the delivery limit) cannot be redeclared with other arguments:
/// it is then used as it is, with a warning and the `consumer_queue_legacy` gauge at 1.
/// Retries and parking work the same; only the broker's delivery limit is missing until
/// the queue is recreated (ADR 0009, "Upgrading").
async fn declare_main(broker: &Broker, queue: &str, args: FieldTable) -> anyhow::Result<()> {
    // A refused declare closes its channel: a channel of its own.
    let channel = broker.channel().await?;
    let legacy = match declare_plain(&channel, queue, args).await {
        Ok(()) => false,
        Err(e) if format!("{e:#}").contains("PRECONDITION_FAILED") => {
            tracing::warn!(
                queue,
                "queue exists with older arguments; used as it is, without the delivery limit"
            );
            if depth(&broker.channel().await?, queue).await.is_none() {
                anyhow::bail!("{queue} can be neither declared nor used: {e:#}");
            }
            true
        }
        Err(e) => return Err(e),
    };
    let _ = channel.close(200, "declared".into()).await;
    metrics::gauge!("consumer_queue_legacy", "queue" => queue.to_owned()).set(if legacy {
        1.0
    } else {
        0.0
    });
    Ok(())
}

/// Publishes `data` straight into `queue` (through the default exchange) on a channel in
/// confirm mode, and waits for the broker to take it. Unroutable counts as a failure.
pub async fn send_to_queue(
    channel: &Channel,
    queue: &str,
    data: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let publish = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            data,
            properties,
        )
        .await
        .with_context(|| format!("publishing to {queue}"))?;
    let confirm = bounded(&format!("confirming a publish to {queue}"), publish).await?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => anyhow::bail!("{queue} does not exist (message returned)"),
        Confirmation::Nack(_) => anyhow::bail!("the broker refused a message for {queue}"),
        Confirmation::NotRequested => anyhow::bail!("the channel is not in confirm mode"),
    }
}

/// A new channel in publisher-confirm mode.
pub async fn confirm_channel(broker: &Broker) -> anyhow::Result<Channel> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    Ok(channel)
}

/// Deletes every queue and exchange the system declares under `prefix` (test and fuzz
/// runs clean up after themselves with it). Best effort: what is missing is skipped.
pub async fn delete_all(amqp_url: &str, prefix: &str) {
    let Ok(conn) = Connection::connect(amqp_url, ConnectionProperties::default()).await else {
        return;
    };
    let (queues, exchanges) = Topology::new(prefix).all_names();
    for q in queues {
        // A failed delete closes its channel: one channel each.
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
        }
    }
    for x in exchanges {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(x.as_str().into(), Default::default())
                .await;
        }
    }
    let _ = conn.close(200, "cleaned".into()).await;
}

/// A string header's value (long or short string), or None.
pub fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Messages ready in `queue`, or None when it cannot be read (missing, broker away).
pub async fn depth(channel: &Channel, queue: &str) -> Option<u32> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .ok()
        .map(|q| q.message_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_that_never_comes_becomes_an_error_naming_it() {
        let never = std::future::pending::<Result<(), std::io::Error>>();
        let e = bounded_by(Duration::from_millis(20), "acknowledging a message", never)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("acknowledging a message"), "{e}");
        let answered = async { Ok::<_, std::io::Error>(7) };
        assert_eq!(bounded("a confirm", answered).await.unwrap(), 7);
        let failed = async { Err::<(), _>(std::io::Error::other("closed")) };
        let e = bounded("a confirm", failed).await.unwrap_err();
        assert!(format!("{e:#}").contains("closed"), "{e:#}");
    }

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1.");
        assert_eq!(t.exchange("payments"), "t1.payments.events");
        assert_eq!(
            t.queue("settlement", "payments"),
            "t1.settlement.payments-events"
        );
    }

    #[test]
    fn every_route_has_a_retry_and_a_parking_queue() {
        let (queues, exchanges) = Topology::new("p.").all_names();
        assert_eq!(exchanges.len(), PRODUCERS.len());
        assert!(queues.contains(&"p.payments.accounts-events.parked".to_owned()));
        assert!(queues.contains(&"p.payments.accounts-events.retry.30s".to_owned()));
        assert_eq!(queues.len(), ROUTES.len() * (2 + RETRY_DELAYS_SECS.len()));
    }
}
