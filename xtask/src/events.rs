//! `cargo xtask events parked|replay-parked`: what the consumers parked, and putting it
//! back once the cause is fixed. Reads the broker named by `FLEET__AMQP__URL` and the
//! names under `FLEET__AMQP__PREFIX` (the development defaults otherwise).

use shared_kernel::amqp::{parking, Broker, Topology};
use shared_kernel::secrets::Secret;

fn broker_and_topology() -> (std::sync::Arc<Broker>, Topology) {
    let url =
        std::env::var("FLEET__AMQP__URL").unwrap_or_else(|_| crate::dev::LOCAL_AMQP_URL.to_owned());
    let prefix = std::env::var("FLEET__AMQP__PREFIX").unwrap_or_default();
    (Broker::new(Secret::new(url)), Topology::new(&prefix))
}

fn queues(topology: &Topology, queue: Option<&str>) -> Vec<String> {
    match queue {
        Some(q) if q.starts_with(&topology.prefix) => vec![q.to_owned()],
        Some(q) => vec![format!("{}{q}", topology.prefix)],
        None => topology.queues(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Prints the parked messages (as JSON lines) of one queue or of all.
pub fn parked(queue: Option<&str>, limit: usize) -> anyhow::Result<()> {
    let (broker, topology) = broker_and_topology();
    runtime()?.block_on(async {
        let mut total = 0;
        for q in queues(&topology, queue) {
            for p in parking::list(&broker, &q, limit).await? {
                println!("{}", serde_json::to_string(&p)?);
                total += 1;
            }
        }
        eprintln!("{total} parked message(s)");
        Ok(())
    })
}

/// Returns parked messages to their queues: all, or one event by id.
pub fn replay(queue: Option<&str>, event_id: Option<&str>) -> anyhow::Result<()> {
    let (broker, topology) = broker_and_topology();
    runtime()?.block_on(async {
        for q in queues(&topology, queue) {
            let n = parking::replay(&broker, &q, event_id).await?;
            eprintln!("{q}: {n} message(s) returned");
        }
        Ok(())
    })
}
