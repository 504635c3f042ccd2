//! The markdown report.
use super::*;

pub(crate) fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "–".to_owned(),
    }
}

pub(crate) fn total_memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(crate) fn print_report(
    args: &Args,
    e2e: &[Result<EndToEnd, String>],
    relay: &[Result<Throughput, String>],
) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".to_owned());
    println!("# Event pipeline benchmark");
    println!();
    println!(
        "{} · nproc {cpus} · memory {} · load: {LOAD_WORKERS} workers for {} s with a settlement run every {} ms · \
         throughput: {} events in transactions of {INSERT_TX_ROWS}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        total_memory(),
        args.seconds,
        SETTLEMENT_EVERY.as_millis(),
        args.events,
    );
    println!();
    println!(
        "Numbers are only comparable within one run (same machine, same moment, same background load); \
         latencies come from database timestamps (`now()` of each writing transaction)."
    );
    println!();
    println!("| Metric | polling | cdc |");
    println!("|---|---:|---:|");
    let row = |name: &str, cell: &dyn Fn(&EndToEnd) -> String| {
        let cells: Vec<String> = e2e
            .iter()
            .map(|r| match r {
                Ok(e) => cell(e),
                Err(_) => "failed".to_owned(),
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row("Captures measured", &|e| {
        format!(
            "{} ({:.1}/s)",
            e.ledger.n,
            e.captures as f64 / e.load_seconds
        )
    });
    row("Capture → ledger p50", &|e| ms(e.ledger.p50));
    row("Capture → ledger p99", &|e| ms(e.ledger.p99));
    row("Capture → ledger max", &|e| ms(e.ledger.max));
    row("Capture → settlement item p50", &|e| ms(e.settlement.p50));
    row("Capture → settlement item p99", &|e| ms(e.settlement.p99));
    row("Settlement runs (failed)", &|e| {
        format!("{} ({})", e.runs, e.failed_runs)
    });
    row("Load requests not 201", &|e| e.load_failures.to_string());
    row("Reconciliation", &|_| "ok".to_owned());
    for batch in BATCH_SIZES {
        let cells = |cell: &dyn Fn(&Throughput) -> String| -> String {
            MODES
                .iter()
                .map(|mode| {
                    let found = relay.iter().find(|r| match r {
                        Ok(t) => t.mode == *mode && t.batch == batch,
                        Err(_) => false,
                    });
                    match found {
                        Some(Ok(t)) => cell(t),
                        _ => "failed".to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        println!(
            "| Relay throughput, batch {batch} | {} |",
            cells(&|t| format!("{:.0} msg/s", t.rate()))
        );
        println!(
            "| Relay wall time, batch {batch} (inserting) | {} |",
            cells(&|t| format!(
                "{:.2} s ({:.2} s)",
                t.wall.as_secs_f64(),
                t.inserting.as_secs_f64()
            ))
        );
        println!(
            "| Publish latency p50 / p99, batch {batch} | {} |",
            cells(&|t| format!("{} / {}", ms(t.latency.p50), ms(t.latency.p99)))
        );
    }
    let mut failures = Vec::new();
    for (mode, r) in MODES.iter().zip(e2e) {
        if let Err(e) = r {
            failures.push(format!("end-to-end, {mode}: {e}"));
        }
    }
    let order = BATCH_SIZES
        .iter()
        .flat_map(|b| MODES.iter().map(move |m| (*m, *b)));
    for ((mode, batch), r) in order.zip(relay) {
        if let Err(e) = r {
            failures.push(format!("relay throughput, {mode}, batch {batch}: {e}"));
        }
    }
    if !failures.is_empty() {
        println!();
        println!("Failed measurements:");
        for f in failures {
            println!("- {f}");
        }
    }
}
