//! The consumer loop: manual acks and bounded prefetch; transient failures go to a retry
//! queue with a growing delay; what cannot be applied (unparseable, rejected by the
//! handler, or out of attempts) is parked with its reason and original headers, and
//! the consumer goes on with the next message.

use super::{confirm_channel, declare_queue, parking_queue, retry_queue, send_to_queue};
use super::{Broker, RETRY_DELAYS_SECS};
use crate::event::CloudEvent;
use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Header counting the attempts a message has had so far (absent on the first).
pub const ATTEMPTS_HEADER: &str = "x-attempts";
/// Headers a parked message carries besides its original ones.
pub const PARKED_REASON: &str = "x-parked-reason";
pub const PARKED_AT: &str = "x-parked-at";
pub const PARKED_FROM: &str = "x-parked-from";

const PREFETCH: u16 = 32;

/// What a handler says about an event it could not apply.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (database away, lock timeout): the message is retried later.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help (unknown shape, fails its schema): the message is parked.
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
    /// Attempts (the first included) before a transiently failing message is parked.
    pub max_attempts: u32,
}

/// Consumes a subscription forever, acking each message only after the handler
/// committed (or after it was handed to a retry or parking queue). Declares its queues
/// (idempotent) on every (re)connect, and reconnects with backoff when the broker goes.
/// Returns once `stop` turns true, after the message in hand is done (acked, retried or
/// parked); the unacked rest goes back to the queue when the channel closes.
pub async fn consume_forever(broker: Arc<Broker>, sub: Subscription, handler: Handler, stop: Stop) {
    tokio::select! {
        () = consume(&broker, &sub, &handler, stop) => {}
        () = watch_depths(&broker, &sub.queue) => {}
    }
}

/// Turns true when the process is stopping.
pub type Stop = tokio::sync::watch::Receiver<bool>;

/// Publishes the depth of the queue and of its parking queue as gauges.
async fn watch_depths(broker: &Broker, queue: &str) {
    loop {
        if let Ok(channel) = broker.channel().await {
            // A passive declare of a missing queue closes its channel: one channel each.
            if let Some(n) = super::depth(&channel, queue).await {
                metrics::gauge!("consumer_queue_messages", "queue" => queue.to_owned())
                    .set(f64::from(n));
            }
            let _ = channel.close(200, "measured".into()).await;
        }
        if let Some(n) = super::parking::count(broker, queue).await {
            metrics::gauge!("consumer_parked_messages", "queue" => queue.to_owned())
                .set(f64::from(n));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn consume(broker: &Broker, sub: &Subscription, handler: &Handler, mut stop: Stop) {
    let mut backoff = Duration::from_millis(200);
    let queue = sub.queue.clone();
    loop {
        if *stop.borrow() {
            tracing::info!(queue, "consumer stopped");
            return;
        }
        let started = Instant::now();
        let ended = consume_once(broker, sub, handler, &mut stop).await;
        if *stop.borrow() {
            tracing::info!(queue, "consumer stopped");
            return;
        }
        match ended {
            Ok(()) => tracing::warn!(queue, "consumer stream ended; reconnecting"),
            Err(e) => tracing::warn!(queue, error = %e, "consumer failed; reconnecting"),
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(200);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn consume_once(
    broker: &Broker,
    sub: &Subscription,
    handler: &Handler,
    stop: &mut Stop,
) -> anyhow::Result<()> {
    let queue = sub.queue.as_str();
    let channel = broker.channel().await?;
    let keys: Vec<&str> = sub.keys.iter().map(String::as_str).collect();
    declare_queue(broker, queue, &sub.exchange, &keys).await?;
    let publisher = confirm_channel(broker).await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
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
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.changed() => {
                let _ = channel.close(200, "stopping".into()).await;
                return Ok(());
            }
            next = consumer.next() => next,
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        if delivery.redelivered {
            metrics::counter!("consumer_redeliveries_total", "queue" => queue.to_owned())
                .increment(1);
        }
        let started = Instant::now();
        let outcome = handle(sub, handler, &publisher, &delivery).await?;
        metrics::histogram!("consumer_handle_seconds", "queue" => queue.to_owned())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("consumer_messages_total", "queue" => queue.to_owned(), "outcome" => outcome)
            .increment(1);
        // Bounded: on a timeout the consumer reconnects, the unacked message comes back,
        // and the inbox makes it a no-op.
        super::bounded(
            "acknowledging a message",
            delivery.ack(BasicAckOptions::default()),
        )
        .await?;
    }
    Ok(())
}

/// Applies, retries or parks one delivery; returns the outcome for the metrics. An error
/// means the message could not be handed on: it stays unacked and comes back.
async fn handle(
    sub: &Subscription,
    handler: &Handler,
    publisher: &Channel,
    delivery: &Delivery,
) -> anyhow::Result<&'static str> {
    let queue = sub.queue.as_str();
    let event: CloudEvent = match serde_json::from_slice(&delivery.data) {
        Ok(e) => e,
        Err(e) => {
            let reason = format!("not a CloudEvent: {e}");
            tracing::error!(queue, reason = %redacted(&reason), "unparseable message parked");
            park(publisher, queue, delivery, &reason).await?;
            return Ok("parked");
        }
    };
    let age = (chrono::Utc::now() - event.time).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("consumer_event_age_seconds", "queue" => queue.to_owned()).record(age);
    let h = handler.clone();
    let ev = event.clone();
    // One span per message handled, a child of the producer's span (W3C trace context
    // from the AMQP header, else from the event).
    let span = tracing::info_span!("consume", queue, event_type = %event.event_type, event_id = %event.id, trace_id = tracing::field::Empty);
    let header = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| super::header_text(h, "traceparent"));
    crate::trace::continue_from(&span, header.as_deref().or(event.traceparent.as_deref()));
    // Log lines inside carry the trace id, as a request's do.
    span.record("trace_id", crate::trace::trace_id(&span).as_str());
    let outcome = tokio::task::spawn_blocking(move || span.in_scope(|| h(&ev)))
        .await
        .unwrap_or_else(|e| Err(HandlerError::Transient(format!("handler panicked: {e}"))));
    let attempts = attempts(delivery) + 1;
    match outcome {
        Ok(()) => Ok("handled"),
        Err(HandlerError::Transient(reason)) if attempts < sub.max_attempts => {
            let delay = retry_delay(attempts);
            tracing::warn!(queue, event_id = %event.id, event_type = %event.event_type, attempts, delay, reason = %redacted(&reason), "transient failure; retrying later");
            let props = with_header(
                &delivery.properties,
                ATTEMPTS_HEADER,
                AMQPValue::LongLongInt(i64::from(attempts)),
            );
            send_to_queue(publisher, &retry_queue(queue, delay), &delivery.data, props).await?;
            Ok("retried")
        }
        Err(e) => {
            let reason = format!("{e} (after {attempts} attempt(s))");
            tracing::error!(queue, event_id = %event.id, event_type = %event.event_type, reason = %redacted(&reason), "message parked");
            park(publisher, queue, delivery, &reason).await?;
            Ok("parked")
        }
    }
}

/// The delay before retry number `attempts` (1-based).
pub fn retry_delay(attempts: u32) -> u32 {
    let i = (attempts as usize).saturating_sub(1);
    RETRY_DELAYS_SECS[i.min(RETRY_DELAYS_SECS.len() - 1)]
}

/// A failure's text as it may be logged or kept in the parked message's header: serde
/// quotes the offending value, which in a hostile message could be a card number, a token
/// or a credential, so digit runs and every secret `redact` knows are masked. Always, even
/// where logging redaction is off: the header outlives the process, in the broker.
fn redacted(reason: &str) -> String {
    crate::redact::redact(&crate::http::redact_digit_runs(reason))
        .chars()
        .take(1000)
        .collect()
}

fn attempts(delivery: &Delivery) -> u32 {
    let value = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS_HEADER).cloned());
    match value {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

fn with_header(props: &BasicProperties, key: &str, value: AMQPValue) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(key.into(), value);
    props.clone().with_headers(headers)
}

async fn park(
    publisher: &Channel,
    queue: &str,
    delivery: &Delivery,
    reason: &str,
) -> anyhow::Result<()> {
    let reason = redacted(reason);
    let mut props = with_header(
        &delivery.properties,
        PARKED_REASON,
        AMQPValue::LongString(reason.as_str().into()),
    );
    props = with_header(
        &props,
        PARKED_AT,
        AMQPValue::LongString(chrono::Utc::now().to_rfc3339().as_str().into()),
    );
    props = with_header(&props, PARKED_FROM, AMQPValue::LongString(queue.into()));
    send_to_queue(publisher, &parking_queue(queue), &delivery.data, props).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_then_stay_at_the_longest_delay() {
        let delays: Vec<u32> = (1..=5).map(retry_delay).collect();
        assert_eq!(delays, vec![1, 5, 30, 30, 30]);
    }

    #[test]
    fn a_parked_reason_keeps_no_card_number_token_or_credential() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        let reason = format!(
            "invalid type: string \"4000056655665556\", Bearer {jwt} password=hunter2-secret"
        );
        let kept = redacted(&reason);
        for secret in ["4000056655665556", jwt, "hunter2-secret"] {
            assert!(!kept.contains(secret), "{secret} kept in {kept}");
        }
        assert!(kept.starts_with("invalid type: string"), "{kept}");
        assert!(redacted(&"x".repeat(5000)).len() <= 1000);
    }
}
