//! Reading and replaying parked messages (`cargo xtask events parked|replay-parked`).

use super::consumer::{ATTEMPTS_HEADER, PARKED_AT, PARKED_FROM, PARKED_REASON};
use super::{confirm_channel, depth, header_text, parking_queue, send_to_queue, Broker};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;

/// A parked message as an operator sees it: what it is and why it was parked.
#[derive(Debug, Clone, Serialize)]
pub struct Parked {
    pub queue: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub subject: Option<String>,
    pub reason: String,
    pub parked_at: Option<String>,
    pub attempts: Option<i64>,
}

fn describe(queue: &str, data: &[u8], headers: &FieldTable) -> Parked {
    let body: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let reason = header_text(headers, PARKED_REASON)
        .or_else(|| {
            header_text(headers, "x-first-death-reason")
                .map(|r| format!("dead-lettered by the broker: {r}"))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let attempts = match headers.inner().get(ATTEMPTS_HEADER) {
        Some(AMQPValue::LongLongInt(n)) => Some(*n),
        _ => None,
    };
    Parked {
        queue: queue.to_owned(),
        event_id: field("id"),
        event_type: field("type"),
        subject: field("subject"),
        reason,
        parked_at: header_text(headers, PARKED_AT),
        attempts,
    }
}

/// Up to `limit` parked messages of `queue`, left in place.
pub async fn list(broker: &Broker, queue: &str, limit: usize) -> anyhow::Result<Vec<Parked>> {
    let parked = parking_queue(queue);
    let channel = broker.channel().await?;
    let mut found = Vec::new();
    let mut last = None;
    // Each get stays unacked, so the next one moves on; all go back at the end.
    while found.len() < limit {
        let Some(msg) = channel
            .basic_get(parked.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let headers = msg
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        found.push(describe(queue, &msg.delivery.data, &headers));
        last = Some(msg.delivery.delivery_tag);
    }
    if let Some(tag) = last {
        let requeue = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        channel.basic_nack(tag, requeue).await?;
    }
    let _ = channel.close(200, "listed".into()).await;
    Ok(found)
}

/// Parked messages of `queue` left, or None when the queue cannot be read.
pub async fn count(broker: &Broker, queue: &str) -> Option<u32> {
    let channel = broker.channel().await.ok()?;
    let n = depth(&channel, &parking_queue(queue)).await;
    let _ = channel.close(200, "counted".into()).await;
    n
}

/// Returns parked messages of `queue` to it (all, or only the event `only`), without
/// their parking headers and with a fresh attempt count. Returns how many went back.
pub async fn replay(broker: &Broker, queue: &str, only: Option<&str>) -> anyhow::Result<usize> {
    let parked = parking_queue(queue);
    let reader = broker.channel().await?;
    let Some(waiting) = depth(&reader, &parked).await else {
        anyhow::bail!("{parked} cannot be read");
    };
    let publisher = confirm_channel(broker).await?;
    let mut replayed = 0;
    // At most the messages parked when the replay began: one that fails again is parked
    // again behind them and waits for the next replay, rather than looping. Messages
    // left unacked (not the one asked for) are not got again on this channel.
    for _ in 0..waiting {
        let Some(msg) = reader
            .basic_get(parked.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = msg.delivery;
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let id = describe(queue, &delivery.data, &headers).event_id;
        if only.is_some_and(|o| id.as_deref() != Some(o)) {
            continue; // stays unacked: back in the parking queue when the channel closes
        }
        let mut kept = FieldTable::default();
        for (k, v) in headers.inner() {
            let drop = [ATTEMPTS_HEADER, PARKED_REASON, PARKED_AT, PARKED_FROM]
                .contains(&k.as_str())
                || k.as_str().starts_with("x-death")
                || k.as_str().starts_with("x-first-death")
                || k.as_str().starts_with("x-last-death");
            if !drop {
                kept.insert(k.clone(), v.clone());
            }
        }
        let props = delivery.properties.clone().with_headers(kept);
        send_to_queue(&publisher, queue, &delivery.data, props).await?;
        super::bounded(
            "acknowledging a replayed message",
            delivery.ack(BasicAckOptions::default()),
        )
        .await?;
        replayed += 1;
    }
    let _ = reader.close(200, "replayed".into()).await;
    let _ = publisher.close(200, "replayed".into()).await;
    Ok(replayed)
}
