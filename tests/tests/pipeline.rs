//! The consumer side of the event pipeline against the real broker: transient failures
//! are retried with growing delays, then parked with their reason; parked messages can
//! be replayed; a poison message is parked at once and the queue keeps flowing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared_kernel::amqp::{
    consume_forever, declare_exchange, parking, Broker, Handler, HandlerError, Subscription,
    Topology,
};
use shared_kernel::event::CloudEvent;
use shared_kernel::secrets::Secret;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::infra::{delete_broker_names, Infra};
use tests::TestSystem;

/// Publishes `event` to `exchange` with its type as routing key, confirmed and routed to a
/// queue: the consumer binds its queue after it declares the parking queue that
/// `start_consumer` waits for, so a message sent before the binding is returned and sent
/// again.
async fn publish(broker: &Broker, exchange: &str, event: &CloudEvent) {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let ch = broker.channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let confirm = ch
            .basic_publish(
                exchange.into(),
                event.event_type.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &serde_json::to_vec(event).unwrap(),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        match confirm {
            lapin::Confirmation::Ack(None) => return,
            other => assert!(
                Instant::now() < deadline,
                "{exchange} never routed the event: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a consumer of `queue` (3 attempts) and waits until it has declared its queues.
async fn start_consumer(
    broker: &Arc<Broker>,
    queue: &str,
    exchange: &str,
    handler: Handler,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let sub = Subscription {
        queue: queue.to_owned(),
        exchange: exchange.to_owned(),
        keys: vec!["payments.#".to_owned()],
        max_attempts: 3,
    };
    let (running, stop) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn(consume_forever(broker.clone(), sub, handler, stop));
    let deadline = Instant::now() + Duration::from_secs(10);
    while parking::count(broker, queue).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the consumer declared its queues"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (consumer, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_later_and_later_then_parked_and_can_be_replayed() {
    let infra = Infra::get().await;
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let topology = Topology::new(&prefix);
    let broker = Broker::new(Secret::new(infra.amqp_url.clone()));
    let exchange = topology.exchange("payments");
    let queue = topology.queue("settlement", "payments");
    declare_exchange(&broker.channel().await.unwrap(), &exchange)
        .await
        .unwrap();

    // The handler fails `flaky` twice, then applies it; `broken` fails until healed.
    let flaky = CloudEvent::new("/payments", "payments.test.v1", "a", 1, json!({}));
    let broken = CloudEvent::new("/payments", "payments.test.v1", "b", 1, json!({}));
    let seen: Arc<Mutex<HashMap<uuid::Uuid, Vec<Instant>>>> = Arc::default();
    let applied: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let healed = Arc::new(AtomicBool::new(false));
    let handler: Handler = {
        let (seen, applied, healed, flaky_id) =
            (seen.clone(), applied.clone(), healed.clone(), flaky.id);
        Arc::new(move |event| {
            let mut seen = seen.lock().unwrap();
            let tries = seen.entry(event.id).or_default();
            tries.push(Instant::now());
            let ok = if event.id == flaky_id {
                tries.len() >= 3
            } else {
                healed.load(Ordering::SeqCst)
            };
            if !ok {
                return Err(HandlerError::Transient("database away".to_owned()));
            }
            applied.lock().unwrap().push(event.id);
            Ok(())
        })
    };
    let (consumer, _running) = start_consumer(&broker, &queue, &exchange, handler).await;
    publish(&broker, &exchange, &flaky).await;
    publish(&broker, &exchange, &broken).await;

    // Both are tried three times; the second wait is longer than the first.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            [flaky.id, broken.id]
                .iter()
                .all(|id| seen.get(id).is_some_and(|t| t.len() >= 3))
        };
        let parked = parking::count(&broker, &queue).await.unwrap_or(0);
        if done && parked == 1 {
            break;
        }
        if Instant::now() >= deadline {
            let tries: Vec<(&str, usize)> = {
                let seen = seen.lock().unwrap();
                [("flaky", flaky.id), ("broken", broken.id)]
                    .iter()
                    .map(|(name, id)| (*name, seen.get(id).map_or(0, Vec::len)))
                    .collect()
            };
            panic!("three attempts each, then parked: saw tries {tries:?}, {parked} parked");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let seen = seen.lock().unwrap();
        for id in [flaky.id, broken.id] {
            let t = &seen[&id];
            assert_eq!(t.len(), 3, "exactly max_attempts tries");
            assert!(
                t[1] - t[0] >= Duration::from_millis(900),
                "first retry waits ~1 s"
            );
            assert!(
                t[2] - t[1] >= Duration::from_millis(4500),
                "second retry waits ~5 s"
            );
        }
    }
    assert_eq!(*applied.lock().unwrap(), vec![flaky.id]);

    // The broken one is parked, with its reason and attempts; nothing else is.
    let parked = parking::list(&broker, &queue, 10).await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    let expected_id = broken.id.to_string();
    assert_eq!(parked[0].event_id.as_deref(), Some(expected_id.as_str()));
    assert!(parked[0].reason.contains("database away"), "{parked:?}");
    assert!(
        parked[0].reason.contains("after 3 attempt(s)"),
        "{parked:?}"
    );
    assert!(parked[0].parked_at.is_some());

    // Once the cause is fixed, a replay applies it and empties the parking queue.
    healed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while parking::count(&broker, &queue).await != Some(1) {
        assert!(Instant::now() < deadline, "listing left the message parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = parking::replay(&broker, &queue, None).await.unwrap();
    assert_eq!(n, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !applied.lock().unwrap().contains(&broken.id) {
        assert!(Instant::now() < deadline, "the replayed message is applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(parking::count(&broker, &queue).await, Some(0));
    consumer.abort();
    delete_broker_names(&infra.amqp_url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_is_parked_at_once_and_the_queue_keeps_flowing() {
    let sys = TestSystem::start().await;
    let card_id = sys.card_known_to_payments(100_000).await;
    let captured = "payments.payment_captured.v1";

    // Not JSON at all, and a well-formed event whose data fails its schema.
    sys.publish_raw("payments", captured, b"\x00not json{")
        .await;
    let bad = CloudEvent::new("/payments", captured, "x", 1, json!({"amount": "lots"}));
    sys.publish_raw("payments", captured, &serde_json::to_vec(&bad).unwrap())
        .await;

    // A real payment behind them still reaches its batch.
    sys.authorize_and_capture(&card_id, 1_000, "m-1").await;
    let batches = format!("{}/v1/settlement-batches?merchant_id=m-1", sys.settlement);
    sys.eventually(
        "the capture to reach its batch",
        Duration::from_secs(30),
        || async {
            let r = sys.get(&batches).await;
            (r.body["data"][0]["item_count"] == 1).then_some(())
        },
    )
    .await;

    // Both poison messages are parked, each with why, after a single attempt.
    let parked = sys.parked("settlement", "payments").await;
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert!(
        parked
            .iter()
            .any(|p| p.reason.starts_with("not a CloudEvent")),
        "{parked:?}"
    );
    let bad_id = bad.id.to_string();
    let schema = parked
        .iter()
        .find(|p| p.event_id.as_deref() == Some(bad_id.as_str()))
        .expect("the bad event is parked");
    assert!(schema.reason.contains("permanent"), "{schema:?}");
    assert!(schema.reason.contains("after 1 attempt(s)"), "{schema:?}");
    // The parked count shows in the metrics, per queue.
    let metrics = sys.fetch_text(&format!("{}/metrics", sys.settlement)).await;
    let queue = format!("{}settlement.payments-events", sys.prefix);
    let labels = [("queue", queue.as_str()), ("outcome", "parked")];
    let parked = tests::metric_value(&metrics, "consumer_messages_total", &labels);
    assert_eq!(parked, 2.0);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_v1_producer_and_a_v2_consumer_work_together() {
    let sys = TestSystem::start().await;
    let card_id = sys.card_known_to_payments(100_000).await;
    let spend = sys
        .get(&format!("{}/v1/cards/{card_id}/spend", sys.payments))
        .await;
    let account_id = spend.body["account_id"].as_str().unwrap().to_owned();

    // payments still publishes v1 …
    sys.authorize_and_capture(&card_id, 1_000, "m-v2").await;
    // … while a producer already on v2 sends its first event.
    let v2 = CloudEvent::new(
        "/payments",
        settlement::events::PAYMENT_CAPTURED_V2,
        uuid::Uuid::now_v7(),
        2,
        json!({"capture_id": uuid::Uuid::now_v7(), "authorization_id": uuid::Uuid::now_v7(),
               "card_id": card_id, "account_id": account_id,
               "merchant": {"id": "m-v2", "name": "Fuel", "category_code": "5541", "country": "US"},
               "captured_amount": {"amount": 700, "currency": "USD"},
               "captured_at": chrono::Utc::now()}),
    );
    let schema = tests::contract::load(&format!(
        "contracts/events/{}.schema.json",
        settlement::events::PAYMENT_CAPTURED_V2
    ));
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(
        validator.is_valid(&v2.data),
        "the v2 event follows its schema"
    );
    sys.publish_raw(
        "payments",
        settlement::events::PAYMENT_CAPTURED_V2,
        &serde_json::to_vec(&v2).unwrap(),
    )
    .await;

    // settlement batches both, with the same meaning, and accounts posts both.
    let batches = format!("{}/v1/settlement-batches?merchant_id=m-v2", sys.settlement);
    let batch = sys
        .eventually(
            "both versions in the batch",
            Duration::from_secs(30),
            || async {
                let r = sys.get(&batches).await;
                (r.body["data"][0]["item_count"] == 2).then(|| r.body["data"][0].clone())
            },
        )
        .await;
    assert_eq!(batch["gross"]["amount"], 1_700);
    // 1.50% of each: 1000 -> 15, 700 -> 10.5 -> 11.
    assert_eq!(batch["fees"]["amount"], 15 + 11);
    sys.run_settlement().await;
    sys.eventually(
        "both postings in the ledger",
        Duration::from_secs(30),
        || async {
            let n = sys
                .count("SELECT count(DISTINCT payment_id) AS count FROM accounts.ledger_entries")
                .await;
            (n == 2).then_some(())
        },
    )
    .await;
    assert!(sys.parked("settlement", "payments").await.is_empty());
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_or_repeated_snapshot_changes_nothing() {
    let sys = TestSystem::start().await;
    let card_id = sys.card_known_to_payments(10_000).await;
    let spend_url = format!("{}/v1/cards/{card_id}/spend", sys.payments);
    let account_id = sys.get(&spend_url).await.body["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot = |sequence: i64, limit: i64| {
        CloudEvent::new(
            "/accounts",
            "accounts.balance_posted.v1",
            account_id.clone(),
            sequence,
            json!({"account_id": account_id, "currency": "USD",
                   "credit_limit": {"amount": limit, "currency": "USD"},
                   "posted_balance": {"amount": 0, "currency": "USD"},
                   "status": "active", "posting": null}),
        )
    };
    let limit = || async {
        let body = sys.get(&spend_url).await.body;
        body["available_credit"]["amount"].as_i64().unwrap()
    };
    let publish = |e: &CloudEvent| {
        let body = serde_json::to_vec(e).unwrap();
        let key = e.event_type.clone();
        let sys = &sys;
        async move { sys.publish_raw("accounts", &key, &body).await }
    };

    // Sequence 5 arrives first and applies.
    let newest = snapshot(5, 50_000);
    publish(&newest).await;
    sys.eventually(
        "the newest snapshot to apply",
        Duration::from_secs(30),
        || async { (limit().await == 50_000).then_some(()) },
    )
    .await;
    // Then an older one (sequence 3, sent late), and the newest again (a redelivery),
    // and a marker after them, which shows the consumer got past both.
    publish(&snapshot(3, 3_000)).await;
    publish(&newest).await;
    let marker = CloudEvent::new(
        "/accounts",
        "accounts.card_issued.v1",
        "m",
        1,
        json!({"card_id": uuid::Uuid::now_v7(), "account_id": account_id, "status": "active"}),
    );
    publish(&marker).await;
    let marker_card = marker.data["card_id"].as_str().unwrap().to_owned();
    sys.eventually("the marker to apply", Duration::from_secs(30), || async {
        let r = sys
            .get(&format!("{}/v1/cards/{marker_card}/spend", sys.payments))
            .await;
        (r.status == 200).then_some(())
    })
    .await;
    assert_eq!(limit().await, 50_000, "the older snapshot was ignored");
    assert!(sys.parked("payments", "accounts").await.is_empty());
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_by_an_earlier_version_is_used_as_it_is() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let infra = Infra::get().await;
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let topology = Topology::new(&prefix);
    let broker = Broker::new(Secret::new(infra.amqp_url.clone()));
    let (exchange, queue) = (
        topology.exchange("payments"),
        topology.queue("settlement", "payments"),
    );
    // The main queue as the first version declared it: quorum, nothing else.
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let ch = broker.channel().await.unwrap();
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    declare_exchange(&ch, &exchange).await.unwrap();

    let applied: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let handler: Handler = {
        let applied = applied.clone();
        Arc::new(move |event| {
            applied.lock().unwrap().push(event.id);
            Ok(())
        })
    };
    let (consumer, _running) = start_consumer(&broker, &queue, &exchange, handler).await;
    let event = CloudEvent::new("/payments", "payments.test.v1", "a", 1, json!({}));
    publish(&broker, &exchange, &event).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !applied.lock().unwrap().contains(&event.id) {
        assert!(Instant::now() < deadline, "the old queue is consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();
    delete_broker_names(&infra.amqp_url, &prefix).await;
}
