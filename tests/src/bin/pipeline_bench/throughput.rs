//! 2. Relay throughput.
use super::*;

#[derive(Debug)]
pub(crate) struct Throughput {
    pub(crate) mode: RelayMode,
    pub(crate) batch: i32,
    pub(crate) events: usize,
    pub(crate) wall: Duration,
    /// How long the inserts took (first commit → last commit).
    pub(crate) inserting: Duration,
    /// `published_at − created_at` of the measured rows.
    pub(crate) latency: Stats,
}

impl Throughput {
    pub(crate) fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
}

/// Aborts the relay task when dropped, so a failed measurement does not leave it running.
pub(crate) struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    async fn stop(mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// The broker names of one throughput measurement.
pub(crate) struct Names {
    pub(crate) exchange: String,
    pub(crate) queue: String,
}

pub(crate) async fn throughput(
    mode: RelayMode,
    batch: i32,
    events: usize,
) -> Result<Throughput, String> {
    let infra = Infra::get().await;
    let db = AssertUnwindSafe(TestDatabase::create(&infra.postgres_admin_url))
        .catch_unwind()
        .await
        .map_err(|p| format!("no test database: {}", panic_text(p)))?;
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let names = Names {
        exchange: Topology::new(&prefix).exchange("payments"),
        queue: format!("{prefix}bench"),
    };
    let measured = AssertUnwindSafe(measure_throughput(
        &db.url,
        &infra.amqp_url,
        &names,
        mode,
        batch,
        events,
    ))
    .catch_unwind()
    .await
    .map_err(panic_text);
    delete_names(&infra.amqp_url, &names).await;
    db.drop_now().await;
    measured
}

/// Deletes the measurement's queue (and the messages in it) and its exchange.
pub(crate) async fn delete_names(amqp_url: &str, names: &Names) {
    let Ok(conn) =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await
    else {
        eprintln!(
            "[bench] could not connect to RabbitMQ to delete {}",
            names.queue
        );
        return;
    };
    // A failed delete closes its channel: one channel each.
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch
            .queue_delete(names.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch
            .exchange_delete(names.exchange.as_str().into(), Default::default())
            .await;
    }
    let _ = conn.close(200, "bench done".into()).await;
}

/// One outbox row's worth of a `payment_captured` event, as `outbox::enqueue` writes it.
pub(crate) fn captured_event(i: usize) -> CloudEvent {
    let authorization = uuid::Uuid::now_v7();
    CloudEvent::new(
        "/payments",
        "payments.payment_captured.v1",
        authorization,
        1,
        json!({
            "capture_id": uuid::Uuid::now_v7(),
            "authorization_id": authorization,
            "card_id": uuid::Uuid::now_v7(),
            "account_id": uuid::Uuid::now_v7(),
            "merchant": {"id": format!("m-{}", i % 50), "name": "Bench Fuel", "mcc": "5541", "country": "US"},
            "amount": {"amount": 100, "currency": "USD"},
            "captured_at": chrono::Utc::now(),
        }),
    )
}

/// Inserts `n` events in one transaction with one statement (the same columns and
/// payload as `outbox::enqueue`).
pub(crate) fn insert_events(
    conn: &mut PgConnection,
    from: usize,
    n: usize,
) -> diesel::QueryResult<()> {
    let events: Vec<CloudEvent> = (from..from + n).map(captured_event).collect();
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
    let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
    let payloads: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    conn.transaction(|c| {
        diesel::sql_query(
            "INSERT INTO payments.outbox (event_id, event_type, payload) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])",
        )
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<Text>, _>(types)
        .bind::<Array<Jsonb>, _>(payloads)
        .execute(c)
        .map(|_| ())
    })
}

#[derive(diesel::QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

pub(crate) fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

/// Runs `f` with a connection of its own on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut PgConnection) -> T + Send + 'static,
) -> T {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        f(&mut conn)
    })
    .await
    .unwrap()
}

pub(crate) async fn measure_throughput(
    db_url: &str,
    amqp_url: &str,
    names: &Names,
    mode: RelayMode,
    batch: i32,
    events: usize,
) -> Throughput {
    let url = db_url.to_owned();
    tokio::task::spawn_blocking(move || {
        shared_kernel::db::migrate(&url, "payments", payments::MIGRATIONS)
    })
    .await
    .unwrap()
    .unwrap();
    let pool = shared_kernel::db::pool(db_url, "payments", 4).unwrap();

    // The probe queue: every event the relay publishes lands in it.
    let conn = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    declare_exchange(&ch, &names.exchange).await.unwrap();
    ch.queue_declare(
        names.queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        names.queue.as_str().into(),
        names.exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let config = RelayConfig {
        batch_size: batch,
        // Long: in cdc mode the table is then swept only at start, so the rows below
        // come from the slot, not from a sweep.
        lease: Duration::from_secs(600),
        mode,
        ..RelayConfig::new(&names.exchange, "payments", Secret::new(db_url.to_owned()))
    };
    let relay = AbortOnDrop(Some(spawn_relay(
        pool.clone(),
        Broker::new(Secret::new(amqp_url.to_owned())),
        config,
    )));

    // Idle before measuring: in cdc mode the slot exists (else the start-up sweep would
    // publish the rows), and one warm-up event went all the way through (channel open,
    // exchange declared, start-up sweep done).
    if mode == RelayMode::Cdc {
        let started = Instant::now();
        loop {
            let slot_exists = blocking(db_url, |c| {
                let slot = slot_name(c, "payments").unwrap();
                count(
                    c,
                    &format!(
                        "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = '{slot}'"
                    ),
                )
            })
            .await;
            if slot_exists == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the cdc relay did not create its slot"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    blocking(db_url, |c| insert_events(c, 0, 1).unwrap()).await;
    let started = Instant::now();
    let baseline = loop {
        let (unpublished, max_id) = blocking(db_url, |c| {
            (
                count(
                    c,
                    "SELECT count(*) AS n FROM payments.outbox WHERE published_at IS NULL",
                ),
                count(c, "SELECT COALESCE(max(id), 0) AS n FROM payments.outbox"),
            )
        })
        .await;
        if unpublished == 0 {
            break max_id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the warm-up event was not published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let the relay go back to waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Insert in transactions of 1,000 rows on one thread; poll the backlog every 50 ms
    // on another.
    let inserted = Arc::new(AtomicBool::new(false));
    let inserter = {
        let (url, inserted) = (db_url.to_owned(), inserted.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let mut first = None;
            let mut at = 0;
            while at < events {
                let n = INSERT_TX_ROWS.min(events - at);
                insert_events(&mut conn, at, n).unwrap();
                first.get_or_insert_with(Instant::now);
                at += n;
            }
            inserted.store(true, Ordering::SeqCst);
            (first.unwrap(), Instant::now())
        })
    };
    let poller = {
        let url = db_url.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let started = Instant::now();
            loop {
                let all_in = inserted.load(Ordering::SeqCst);
                let unpublished = count(
                    &mut conn,
                    "SELECT count(*) AS n FROM payments.outbox WHERE published_at IS NULL",
                );
                if all_in && unpublished == 0 {
                    return Instant::now();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(600),
                    "{unpublished} rows still unpublished after 600 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let (first_commit, last_commit) = inserter.await.unwrap();
    let done = poller.await.unwrap();
    relay.stop().await;

    let published = blocking(db_url, move |c| {
        count(
            c,
            &format!("SELECT count(*) AS n FROM payments.outbox WHERE id > {baseline} AND published_at IS NOT NULL"),
        )
    })
    .await;
    assert_eq!(
        published as usize, events,
        "every inserted row was published"
    );
    let latency = stats(
        db_url,
        &format!(
            "SELECT EXTRACT(EPOCH FROM published_at - created_at)::float8 * 1000 AS ms \
             FROM payments.outbox WHERE id > {baseline}"
        ),
    )
    .await;
    let _ = conn.close(200, "measured".into()).await;
    drop(pool);
    Throughput {
        mode,
        batch,
        events,
        wall: done.duration_since(first_commit),
        inserting: last_commit.duration_since(first_commit),
        latency,
    }
}
