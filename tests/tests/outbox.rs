//! The outbox relay against a real database and broker, in both modes (polling the
//! table, and following a logical replication slot): events written while the broker is
//! away stay in the outbox and go out when it answers; a message nobody can receive is
//! not marked published; two relays publish each event once; pruning keeps the newest
//! snapshot per subject.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::{Connection, RunQueryDsl};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use shared_kernel::amqp::{declare_exchange, Broker, Topology};
use shared_kernel::db::PgPool;
use shared_kernel::event::CloudEvent;
use shared_kernel::outbox::{
    drop_slots_for_database, enqueue, history, slot_name, spawn_relay, start_relay, RelayConfig,
    RelayMode,
};
use shared_kernel::secrets::Secret;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tests::infra::{Infra, TestDatabase};

const CAPTURED: &str = "payments.payment_captured.v1";

/// One test's database (schema `payments` migrated), broker names and probe queue.
struct Fixture {
    db: TestDatabase,
    pool: PgPool,
    amqp_url: String,
    admin_url: String,
    exchange: String,
    queue: String,
    conn: lapin::Connection,
    ch: lapin::Channel,
    _guard: PanicGuard,
}

/// A failed assertion ends the test before `cleanup`: still drop the database and its
/// slot (a leftover slot keeps WAL forever and blocks DROP DATABASE). Leftover `t…`
/// queues are removed by `cargo xtask test`.
struct PanicGuard {
    admin_url: String,
    database: String,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (admin, name) = (self.admin_url.clone(), self.database.clone());
        let _ = std::thread::spawn(move || {
            let Ok(mut conn) = diesel::PgConnection::establish(&admin) else {
                return;
            };
            let _ = drop_slots_for_database(&mut conn, &name);
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        })
        .join();
    }
}

impl Fixture {
    async fn new() -> Self {
        shared_kernel::http::init_metrics();
        let infra = Infra::get().await;
        let db = TestDatabase::create(&infra.postgres_admin_url).await;
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || {
            shared_kernel::db::migrate(&url, "payments", payments::MIGRATIONS)
        })
        .await
        .unwrap()
        .unwrap();
        let pool = shared_kernel::db::pool(&db.url, "payments", 4).unwrap();
        let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        let conn =
            lapin::Connection::connect(&infra.amqp_url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let _guard = PanicGuard {
            admin_url: infra.postgres_admin_url.clone(),
            database: db.name.clone(),
        };
        Self {
            db,
            pool,
            amqp_url: infra.amqp_url.clone(),
            admin_url: infra.postgres_admin_url.clone(),
            exchange: Topology::new(&prefix).exchange("payments"),
            queue: format!("{prefix}probe"),
            conn,
            ch,
            _guard,
        }
    }

    fn config(&self, mode: RelayMode) -> RelayConfig {
        RelayConfig {
            batch_size: 10,
            poll_interval: Duration::from_millis(200),
            // Long: nothing in these tests may depend on a lease running out, and in
            // cdc mode the table is then swept only once, at start.
            lease: Duration::from_secs(600),
            mode,
            ..RelayConfig::new(&self.exchange, "payments", Secret::new(self.db.url.clone()))
        }
    }

    fn broker(&self) -> std::sync::Arc<Broker> {
        Broker::new(Secret::new(self.amqp_url.clone()))
    }

    /// Declares the probe queue and binds it to the exchange with `key`.
    async fn bind(&self, key: &str) {
        declare_exchange(&self.ch, &self.exchange).await.unwrap();
        self.ch
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.ch
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    /// Consumes the probe queue until `n` messages arrived, then `quiet` longer (to
    /// catch duplicates); returns how often each event id arrived.
    async fn receive(&self, n: usize, within: Duration, quiet: Duration) -> HashMap<String, u32> {
        let mut consumer = self
            .ch
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut seen: HashMap<String, u32> = HashMap::new();
        let deadline = Instant::now() + within;
        loop {
            let total: u32 = seen.values().sum();
            let until = if total as usize >= n {
                Instant::now() + quiet
            } else {
                deadline
            };
            let wait = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, consumer.next()).await {
                Ok(Some(delivery)) => {
                    let body: serde_json::Value =
                        serde_json::from_slice(&delivery.unwrap().data).unwrap();
                    *seen
                        .entry(body["id"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                }
                _ => break,
            }
        }
        seen
    }

    fn sql<T: diesel::deserialize::QueryableByName<diesel::pg::Pg> + 'static>(
        &self,
        query: &str,
    ) -> Vec<T> {
        let mut conn = diesel::PgConnection::establish(&self.db.url).unwrap();
        diesel::sql_query(query).load(&mut conn).unwrap()
    }

    fn exec(&self, query: &str) {
        let mut conn = diesel::PgConnection::establish(&self.db.url).unwrap();
        diesel::sql_query(query).execute(&mut conn).unwrap();
    }

    fn enqueue(&self, events: &[CloudEvent]) {
        let mut conn = self.pool.get().unwrap();
        conn.transaction(|c| {
            for e in events {
                enqueue(c, e)?;
            }
            diesel::QueryResult::Ok(())
        })
        .unwrap();
    }

    fn rows(&self) -> Vec<RowState> {
        self.sql(
            "SELECT event_id::text AS event_id, published_at IS NOT NULL AS published, \
               leased_until IS NOT NULL AS leased, attempts, retry_at IS NOT NULL AS retrying \
             FROM payments.outbox ORDER BY id",
        )
    }

    /// Waits until every row is published.
    async fn all_published(&self, within: Duration) {
        let started = Instant::now();
        while self.rows().iter().any(|r| !r.published) {
            assert!(
                started.elapsed() < within,
                "not all rows were published: {:?}",
                self.rows()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn cleanup(self) {
        let _ = self
            .ch
            .queue_delete(self.queue.as_str().into(), Default::default())
            .await;
        let _ = self
            .ch
            .exchange_delete(self.exchange.as_str().into(), Default::default())
            .await;
        let _ = self.conn.close(200, "done".into()).await;
        // A logical slot keeps WAL and blocks DROP DATABASE.
        let (admin, name) = (self.admin_url.clone(), self.db.name.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = diesel::PgConnection::establish(&admin).unwrap();
            drop_slots_for_database(&mut conn, &name).unwrap()
        })
        .await
        .unwrap();
        self.db.drop_now().await;
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct RowState {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_id: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    published: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    leased: bool,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    retrying: bool,
}

fn event(event_type: &str, subject: &str, sequence: i64) -> CloudEvent {
    CloudEvent::new(
        "/payments",
        event_type,
        subject,
        sequence,
        serde_json::json!({}),
    )
}

fn captured(n: usize) -> Vec<CloudEvent> {
    (0..n)
        .map(|i| event(CAPTURED, &format!("p{i}"), 1))
        .collect()
}

/// The value of a counter or gauge with these labels in this process's `/metrics`.
async fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let response = shared_kernel::http::metrics_endpoint().await;
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    tests::metric_value(&text, name, labels)
}

async fn broker_away_then_back(mode: RelayMode) {
    let f = Fixture::new().await;
    let before = captured(1);
    f.enqueue(&before);

    // A broker that does not answer: the row stays unpublished and is not left leased.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let away = Broker::new(Secret::new(format!(
        "amqp://guest:guest@127.0.0.1:{closed}/%2f"
    )));
    let relay = spawn_relay(f.pool.clone(), away, f.config(mode));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.abort();
    let rows = f.rows();
    assert!(
        !rows[0].published,
        "nothing can be published without a broker"
    );
    assert!(!rows[0].leased, "a relay without a broker leases nothing");
    assert_eq!(
        rows[0].attempts, 0,
        "a broker failure is not the row's fault"
    );
    let failures = metric(
        "outbox_publish_failures_total",
        &[("exchange", &f.exchange), ("reason", "broker")],
    )
    .await;
    assert!(failures >= 1.0, "broker failures are counted: {failures}");

    // The real broker: the row goes out within seconds, not after a lease runs out,
    // and so does one written while the relay runs.
    f.bind("#").await;
    let relay = spawn_relay(f.pool.clone(), f.broker(), f.config(mode));
    f.all_published(Duration::from_secs(10)).await;
    let after = captured(1);
    f.enqueue(&after);
    f.all_published(Duration::from_secs(10)).await;
    let seen = f
        .receive(2, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    relay.abort();
    for e in before.iter().chain(&after) {
        assert_eq!(seen.get(&e.id.to_string()), Some(&1), "{seen:?}");
    }
    let published = metric("outbox_published_total", &[("exchange", &f.exchange)]).await;
    assert_eq!(published, 2.0);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_events_wait_in_the_outbox_while_the_broker_is_away_and_go_out_when_it_is_back() {
    broker_away_then_back(RelayMode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_events_wait_in_the_outbox_while_the_broker_is_away_and_go_out_when_it_is_back() {
    broker_away_then_back(RelayMode::Cdc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_event_stays_in_the_outbox_until_a_queue_is_bound() {
    let f = Fixture::new().await;
    // Only captured events have a queue; the orphan's type has none.
    f.bind(CAPTURED).await;
    let routed = event(CAPTURED, "p1", 1);
    let orphan = event("payments.orphan.v1", "p1", 2);
    f.enqueue(&[routed.clone(), orphan.clone()]);
    let relay = spawn_relay(f.pool.clone(), f.broker(), f.config(RelayMode::Polling));

    let started = Instant::now();
    loop {
        let rows = f.rows();
        if rows[0].published && rows[1].attempts >= 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = f.rows();
    assert_eq!(rows[1].event_id, orphan.id.to_string());
    assert!(!rows[1].published, "a returned message is not published");
    assert!(!rows[1].leased, "its lease is released");
    assert!(rows[1].retrying, "it is retried later");
    let unroutable = metric(
        "outbox_publish_failures_total",
        &[("exchange", &f.exchange), ("reason", "unroutable")],
    )
    .await;
    assert!(unroutable >= 1.0, "unroutable messages are counted");
    assert_eq!(
        metric("outbox_published_total", &[("exchange", &f.exchange)]).await,
        1.0,
        "only the routed event counts as published"
    );

    // A queue for the orphan: it goes out on a later attempt.
    f.bind("payments.orphan.v1").await;
    f.all_published(Duration::from_secs(20)).await;
    let seen = f
        .receive(2, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    relay.abort();
    assert_eq!(seen.get(&routed.id.to_string()), Some(&1), "{seen:?}");
    assert_eq!(seen.get(&orphan.id.to_string()), Some(&1), "{seen:?}");
    f.cleanup().await;
}

async fn two_relays_publish_each_event_once(a: RelayMode, b: RelayMode) {
    let f = Fixture::new().await;
    f.bind("#").await;
    let events = captured(500);
    // Some wait before the relays start, the rest arrive while they run.
    f.enqueue(&events[..100]);
    let first = start_relay(f.pool.clone(), f.broker(), f.config(a))
        .await
        .unwrap();
    let second = start_relay(f.pool.clone(), f.broker(), f.config(b))
        .await
        .unwrap();
    for chunk in events[100..].chunks(40) {
        f.enqueue(chunk);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = f
        .receive(500, Duration::from_secs(60), Duration::from_secs(2))
        .await;
    first.abort();
    second.abort();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    for e in &events {
        assert_eq!(seen.get(&e.id.to_string()), Some(&1), "missing {}", e.id);
    }
    assert_eq!(seen.len(), 500);
    assert!(f.rows().iter().all(|r| r.published && !r.leased));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_polling_relays_publish_each_of_500_events_exactly_once() {
    two_relays_publish_each_event_once(RelayMode::Polling, RelayMode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_and_a_cdc_relay_publish_each_of_500_events_exactly_once() {
    two_relays_publish_each_event_once(RelayMode::Polling, RelayMode::Cdc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_publishes_rows_waiting_before_start_and_rows_inserted_after() {
    let f = Fixture::new().await;
    f.bind("#").await;
    let before = captured(3);
    f.enqueue(&before);
    let relay = start_relay(f.pool.clone(), f.broker(), f.config(RelayMode::Cdc))
        .await
        .unwrap();
    f.all_published(Duration::from_secs(10)).await;

    // With a 600 s lease the table is swept only at start: these come from the slot.
    let after = captured(7);
    f.enqueue(&after[..5]);
    f.enqueue(&after[5..6]);
    f.enqueue(&after[6..]);
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let written: Vec<Text> = f.sql("SELECT pg_current_wal_lsn()::text AS v");
    let started = Instant::now();
    f.all_published(Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cdc is not a slow poll"
    );
    let seen = f
        .receive(10, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    for e in before.iter().chain(&after) {
        assert_eq!(seen.get(&e.id.to_string()), Some(&1), "{seen:?}");
    }
    assert_eq!(seen.len(), 10);

    // The slot of this database and schema was advanced past those inserts.
    let slot = {
        let mut conn = diesel::PgConnection::establish(&f.db.url).unwrap();
        slot_name(&mut conn, "payments").unwrap()
    };
    let started = Instant::now();
    loop {
        let advanced: Vec<Text> = f.sql(&format!(
            "SELECT coalesce(bool_and(confirmed_flush_lsn >= '{}'::pg_lsn), false)::text AS v \
             FROM pg_replication_slots WHERE slot_name = '{slot}'",
            written[0].v
        ));
        if advanced[0].v == "true" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "slot {slot} not advanced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.abort();
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_removes_old_published_rows_but_keeps_the_newest_snapshot_per_subject() {
    let f = Fixture::new().await;
    let (snap_a, snap_b, other) = ("payments.snap_a.v1", "payments.snap_b.v1", CAPTURED);
    let day = 24 * 3600;
    let plan: Vec<(CloudEvent, Option<i64>, bool)> = vec![
        // (event, published seconds ago, kept?)
        (event(other, "o", 1), Some(2 * day), false),
        (event(other, "o", 2), Some(2 * day), false),
        (event(other, "o", 3), Some(600), true), // within the retention
        (event(other, "o", 4), None, true),      // never published
        (event(snap_a, "x", 1), Some(3 * day), false),
        (event(snap_b, "x", 2), Some(2 * day), false),
        (event(snap_a, "x", 3), Some(2 * day), true), // newest of x
        (event(snap_b, "y", 1), Some(2 * day), true), // newest published of y
        (event(snap_a, "y", 2), None, true),          // newer, not published
        (event(snap_a, "z", 1), Some(2 * day), false),
        (event(snap_a, "z", 2), Some(60), true),
    ];
    for (e, ago, _) in &plan {
        f.enqueue(std::slice::from_ref(e));
        if let Some(secs) = ago {
            f.exec(&format!(
                "UPDATE payments.outbox SET published_at = now() - interval '{secs} seconds', \
                   created_at = now() - interval '{secs} seconds' WHERE event_id = '{}'",
                e.id
            ));
        }
    }
    let newest = |subject: &str| {
        plan.iter()
            .filter(|(e, _, _)| e.subject == subject && e.event_type != other)
            .map(|(e, _, _)| e.id)
            .next_back()
            .unwrap()
    };
    let expected_history = vec![newest("x"), newest("y"), newest("z")];
    let read_history = || {
        let mut conn = f.pool.get().unwrap();
        history(&mut conn, &[snap_a, snap_b])
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(read_history(), expected_history);

    // No queue is bound: the unpublished rows stay unpublished while the relay prunes.
    let config = RelayConfig {
        retention: Duration::from_secs(3600),
        prune_interval: Duration::from_secs(1),
        snapshot_types: vec![snap_a.to_owned(), snap_b.to_owned()],
        ..f.config(RelayMode::Polling)
    };
    let relay = spawn_relay(f.pool.clone(), f.broker(), config);
    let kept: Vec<String> = plan
        .iter()
        .filter(|(_, _, keep)| *keep)
        .map(|(e, _, _)| e.id.to_string())
        .collect();
    let started = Instant::now();
    loop {
        let left: Vec<String> = f.rows().into_iter().map(|r| r.event_id).collect();
        if left == kept {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "left {left:?}, expected {kept:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A second run (1 s later) deletes nothing more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    relay.abort();
    let left: Vec<String> = f.rows().into_iter().map(|r| r.event_id).collect();
    assert_eq!(left, kept);
    assert_eq!(read_history(), expected_history, "history survives pruning");
    assert_eq!(
        metric("outbox_pruned_total", &[("exchange", &f.exchange)]).await,
        5.0
    );
    f.cleanup().await;
}
