//! 1. End-to-end latency under load.
use super::*;

#[derive(Debug)]
pub(crate) struct EndToEnd {
    /// Capture committed → posted in the ledger.
    pub(crate) ledger: Stats,
    /// Capture committed → item in settlement.
    pub(crate) settlement: Stats,
    pub(crate) captures: u64,
    pub(crate) load_seconds: f64,
    pub(crate) runs: u64,
    pub(crate) failed_runs: u64,
    pub(crate) load_failures: u64,
}

/// Sets its flag when dropped, so the settlement runner stops even if the measurement
/// panics.
pub(crate) struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub(crate) async fn end_to_end(mode: RelayMode, seconds: u64) -> Result<EndToEnd, String> {
    set_mode(mode);
    let started = AssertUnwindSafe(TestSystem::start()).catch_unwind().await;
    let sys = started.map_err(|p| format!("system did not start: {}", panic_text(p)))?;
    // The contexts' relays run in the mode they were started with.
    let measured = if sys.common.outbox.mode == mode {
        AssertUnwindSafe(measure_end_to_end(&sys, seconds))
            .catch_unwind()
            .await
            .map_err(panic_text)
    } else {
        Err(format!(
            "the system started in mode {}",
            sys.common.outbox.mode
        ))
    };
    sys.shutdown().await;
    measured
}

pub(crate) async fn measure_end_to_end(sys: &TestSystem, seconds: u64) -> EndToEnd {
    let mut cards = Vec::new();
    for _ in 0..LOAD_WORKERS {
        cards.push(sys.card_known_to_payments(1_000_000_000).await);
    }
    let token = sys.token();

    // A settlement run every 250 ms (cutoff now + 1 s) from now until all is posted.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let (runs, failed_runs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let runner = {
        let (stop, runs, failed_runs) = (stop.0.clone(), runs.clone(), failed_runs.clone());
        let (http, url, token) = (
            sys.http.clone(),
            format!("{}/v1/settlement-runs", sys.settlement),
            token.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SETTLEMENT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let cutoff = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
                let sent = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "cutoff": cutoff }))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => runs.fetch_add(1, Ordering::SeqCst),
                    _ => failed_runs.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };

    let load_started = Instant::now();
    let load = tests::load::start(&sys.payments, &token, &cards, LOAD_WORKERS);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let tally = load.stop().await;
    let load_seconds = load_started.elapsed().as_secs_f64();
    eprintln!(
        "[bench]   load done: {} captures accepted, failures {:?}; waiting for the ledger ...",
        tally.captures.len(),
        tally.failures
    );

    // Everything captured reaches settlement and the ledger (the runner keeps running,
    // so the last captures wait no longer than the others).
    sys.eventually("every capture to be posted", CATCH_UP, || async {
        let unposted = sys
            .count(
                "SELECT count(*) AS count FROM payments.captures c \
                 WHERE NOT EXISTS (SELECT 1 FROM settlement.items i WHERE i.capture_id = c.id) \
                    OR NOT EXISTS (SELECT 1 FROM accounts.ledger_entries l WHERE l.payment_id = c.id) \
                    OR NOT c.posted",
            )
            .await;
        (unposted == 0).then_some(())
    })
    .await;
    drop(stop);
    runner.await.unwrap();

    let url = &sys.database.url;
    let ledger = stats(
        url,
        "SELECT EXTRACT(EPOCH FROM l.at - c.created_at)::float8 * 1000 AS ms \
         FROM payments.captures c JOIN ( \
           SELECT payment_id, min(created_at) AS at FROM accounts.ledger_entries GROUP BY payment_id \
         ) l ON l.payment_id = c.id",
    )
    .await;
    let settlement = stats(
        url,
        "SELECT EXTRACT(EPOCH FROM i.created_at - c.created_at)::float8 * 1000 AS ms \
         FROM payments.captures c JOIN settlement.items i ON i.capture_id = c.id",
    )
    .await;

    eprintln!("[bench]   reconciling ...");
    tests::reconcile::settle_and_reconcile(sys, &tally.captures).await;
    EndToEnd {
        ledger,
        settlement,
        captures: tally.captures.len() as u64,
        load_seconds,
        runs: runs.load(Ordering::SeqCst),
        failed_runs: failed_runs.load(Ordering::SeqCst),
        load_failures: tally.failures.values().sum(),
    }
}
