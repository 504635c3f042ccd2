//! A steady load of authorizations and captures, run while a fault is injected: what was
//! accepted (201) is remembered, so the reconciliation can prove none of it was lost.

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the load saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub approved: u64,
    /// Ids of the authorizations the API accepted with 201.
    pub authorizations: Vec<String>,
    /// Ids of the captures the API accepted with 201.
    pub captures: Vec<String>,
    /// Responses other than 201, by status (or "unreachable" for no answer at all).
    pub failures: BTreeMap<String, u64>,
    /// Failures whose body was not an RFC 9457 problem.
    pub not_problems: u64,
    /// The longest a failed request took before its answer.
    pub slowest_failure: Duration,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.approved += other.approved;
        self.authorizations.extend(other.authorizations);
        self.captures.extend(other.captures);
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.not_problems += other.not_problems;
        self.slowest_failure = self.slowest_failure.max(other.slowest_failure);
    }

    /// Failures other than 503 (and "unreachable" when `allow_unreachable`).
    pub fn unexpected_failures(&self, allow_unreachable: bool) -> BTreeMap<String, u64> {
        self.failures
            .iter()
            .filter(|(k, _)| *k != "503" && !(allow_unreachable && *k == "unreachable"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

/// Starts `workers` loops, each authorizing 1.00 USD on one of `cards` and capturing it.
pub fn start(payments: &str, token: &str, cards: &[String], workers: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let workers = (0..workers)
        .map(|i| {
            let (stop, http, accepted) = (stop.clone(), http.clone(), accepted.clone());
            let (base, token) = (payments.to_owned(), token.to_owned());
            let card = cards[i % cards.len()].clone();
            tokio::spawn(async move { work(&http, &base, &token, &card, &stop, &accepted).await })
        })
        .collect();
    Load {
        stop,
        accepted,
        workers,
    }
}

impl Load {
    /// Captures accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops the load and sums what the workers saw.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for w in self.workers {
            total.merge(w.await.expect("a load worker"));
        }
        total
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: serde_json::Value,
    tally: &mut Tally,
) -> Option<serde_json::Value> {
    let started = Instant::now();
    let sent = http
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await;
    let failure = match sent {
        Ok(r) if r.status().as_u16() == 201 => return r.json().await.ok(),
        Ok(r) => {
            let status = r.status().as_u16().to_string();
            let problem = r
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
            if !problem {
                tally.not_problems += 1;
            }
            status
        }
        Err(_) => "unreachable".to_owned(),
    };
    *tally.failures.entry(failure).or_default() += 1;
    tally.slowest_failure = tally.slowest_failure.max(started.elapsed());
    None
}

async fn work(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    card: &str,
    stop: &AtomicBool,
    accepted: &AtomicU64,
) -> Tally {
    let mut tally = Tally::default();
    let auth_url = format!("{base}/v1/authorizations");
    while !stop.load(Ordering::SeqCst) {
        let body = json!({"card_id": card, "amount": {"amount": 100, "currency": "USD"},
            "merchant": {"id": "m-load", "name": "Load Fuel", "mcc": "5541", "country": "US"}});
        let auth = post(http, &auth_url, token, body, &mut tally).await;
        if let Some(id) = auth.as_ref().and_then(|a| a["id"].as_str()) {
            tally.authorizations.push(id.to_owned());
        }
        if let Some(auth) = auth.filter(|a| a["status"] == "approved") {
            tally.approved += 1;
            let id = auth["id"].as_str().unwrap_or_default();
            let cap_url = format!("{auth_url}/{id}/captures");
            let body = json!({"amount": {"amount": 100, "currency": "USD"}});
            if let Some(cap) = post(http, &cap_url, token, body, &mut tally).await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tally
                    .captures
                    .push(cap["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tally
}
