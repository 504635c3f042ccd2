//! The outbox relay against a real database and broker: events written while the broker
//! is away stay in the outbox, and go out as soon as it answers again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shared_kernel::amqp::{declare_exchange, Broker, Topology};
use shared_kernel::event::CloudEvent;
use shared_kernel::outbox::{enqueue, spawn_relay, RelayConfig};
use shared_kernel::secrets::Secret;
use std::time::{Duration, Instant};
use tests::infra::{Infra, TestDatabase};

#[derive(diesel::QueryableByName)]
struct State {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    published: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    leased: bool,
}

fn state(url: &str) -> State {
    use diesel::{Connection, RunQueryDsl};
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    diesel::sql_query(
        "SELECT published_at IS NOT NULL AS published, leased_until IS NOT NULL AS leased FROM payments.outbox",
    )
    .get_result(&mut conn)
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_the_outbox_while_the_broker_is_away_and_go_out_when_it_is_back() {
    let infra = Infra::get().await;
    let db = TestDatabase::create(&infra.postgres_admin_url).await;
    let url = db.url.clone();
    tokio::task::spawn_blocking({
        let url = url.clone();
        move || shared_kernel::db::migrate(&url, "payments", payments::MIGRATIONS)
    })
    .await
    .unwrap()
    .unwrap();
    let pool = shared_kernel::db::pool(&url, "payments", 2).unwrap();
    let event = CloudEvent::new(
        "/payments",
        "payments.payment_captured.v1",
        "a",
        1,
        serde_json::json!({}),
    );
    {
        let mut conn = pool.get().unwrap();
        enqueue(&mut conn, &event).unwrap();
    }
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let exchange = Topology::new(&prefix).exchange("payments");
    let config = |lease_secs| RelayConfig {
        exchange: exchange.clone(),
        notify_channel: "outbox_payments".to_owned(),
        database_url: Secret::new(url.clone()),
        schema: "payments".to_owned(),
        batch_size: 10,
        poll_interval: Duration::from_millis(200),
        lease: Duration::from_secs(lease_secs),
    };

    // A broker that does not answer: the row stays unpublished and is not left leased.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let away = Broker::new(Secret::new(format!(
        "amqp://guest:guest@127.0.0.1:{closed}/%2f"
    )));
    let relay = spawn_relay(pool.clone(), away, config(600));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.abort();
    let s = state(&url);
    assert!(!s.published, "nothing can be published without a broker");
    assert!(!s.leased, "a failed batch gives its rows back at once");

    // The real broker: the row goes out within seconds, not after a lease runs out.
    let broker = Broker::new(Secret::new(infra.amqp_url.clone()));
    let ch = broker.channel().await.unwrap();
    declare_exchange(&ch, &exchange).await.unwrap();
    let relay = spawn_relay(pool.clone(), broker, config(600));
    let started = Instant::now();
    while !state(&url).published {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the event was not published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.abort();
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
    db.drop_now().await;
}
