//! The Prometheus rules, their unit tests and the Grafana dashboards under
//! deploy/observability: promtool accepts the rules and passes their tests; every alert
//! has its labels, a runbook, and tests where it fires and where it does not; every raw
//! metric (and histogram bucket) the rules query is exported by the running contexts;
//! every dashboard query is valid PromQL on metrics that the code records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};
use tests::TestSystem;

const DIR: &str = "deploy/observability";
const SEVERITIES: [&str; 2] = ["page", "ticket"];
/// How long the running system gets to show every metric the rules use.
const WAIT: Duration = Duration::from_secs(40);

#[test]
fn promtool_accepts_the_rules_and_passes_their_unit_tests() {
    let rules = files(&format!("{DIR}/rules"), ".yml");
    let unit_tests = files(&format!("{DIR}/tests"), ".yml");
    assert!(!rules.is_empty(), "no rule files in {DIR}/rules");
    assert!(!unit_tests.is_empty(), "no promtool tests in {DIR}/tests");
    promtool(&["check", "rules"], &rules);
    promtool(&["test", "rules"], &unit_tests);
}

#[test]
fn every_alert_has_labels_a_runbook_and_tests_where_it_fires_and_where_it_does_not() {
    let alerts = alerts();
    assert!(!alerts.is_empty(), "no alerts in {DIR}/rules");
    let (firing, quiet) = tested_alerts();
    let index = std::fs::read_to_string(tests::root().join("docs/runbooks/README.md"))
        .expect("docs/runbooks/README.md indexes the runbooks");
    let mut problems = Vec::new();
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        if !SEVERITIES.contains(&severity) {
            problems.push(format!(
                "{name}: severity {severity:?} is not one of {SEVERITIES:?}"
            ));
        }
        let is_slo = rule["expr"].as_str().unwrap_or("").contains("slo:");
        if is_slo && rule["labels"]["slo"].as_str().is_none() {
            problems.push(format!("{name}: an SLO alert needs an `slo` label"));
        }
        for annotation in ["summary", "description"] {
            if rule["annotations"][annotation].as_str().is_none() {
                problems.push(format!("{name}: no {annotation} annotation"));
            }
        }
        let runbook = format!("docs/runbooks/{name}.md");
        match rule["annotations"]["runbook_url"].as_str() {
            Some(url) if url == runbook => {}
            other => problems.push(format!("{name}: runbook_url is {other:?}, not {runbook}")),
        }
        if !tests::root().join(&runbook).is_file() {
            problems.push(format!("{name}: {runbook} does not exist"));
        }
        if !index.contains(&format!("({name}.md)")) {
            problems.push(format!(
                "{name}: docs/runbooks/README.md does not link {name}.md"
            ));
        }
        if !firing.contains(name) {
            problems.push(format!("{name}: no promtool test case where it fires"));
        }
        if !quiet.contains(name) {
            problems.push(format!(
                "{name}: no promtool test case where it does not fire (exp_alerts: [])"
            ));
        }
    }
    for name in firing.union(&quiet) {
        if !alerts.contains_key(name) {
            problems.push(format!("the promtool tests name an unknown alert {name}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dashboards_are_grafana_dashboards_on_a_prometheus_datasource_variable() {
    let mut uids = BTreeSet::new();
    for ctx in ["accounts", "payments", "settlement"] {
        let path = format!("{DIR}/dashboards/{ctx}.json");
        let text = std::fs::read_to_string(tests::root().join(&path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let d: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            d["schemaVersion"].as_i64().unwrap_or(0) >= 36,
            "{path}: schemaVersion"
        );
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no uid"));
        assert!(uids.insert(uid.to_owned()), "{path}: uid {uid} is taken");
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{path}: no Prometheus datasource variable"
        );
        let panels = panels(&d);
        assert!(!panels.is_empty(), "{path}: no panels");
        let mut ids = BTreeSet::new();
        for p in panels {
            let id = p["id"].as_i64().unwrap();
            assert!(ids.insert(id), "{path}: panel id {id} repeats");
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or("");
            assert!(!title.is_empty(), "{path}: panel {id} has no title");
            assert!(
                p["datasource"]["uid"] == "${datasource}",
                "{path}: panel {title:?} does not use the datasource variable"
            );
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(!targets.is_empty(), "{path}: panel {title:?} has no query");
            for t in targets {
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{path}: panel {title:?} has an empty query"
                );
            }
        }
        let payments_only = text.contains("authorization_decisions_total");
        assert_eq!(
            payments_only,
            ctx == "payments",
            "{path}: authorization decisions belong on the payments dashboard"
        );
    }
}

/// Every panel query parses as PromQL: promtool checks them as recording rules, with
/// Grafana's `$__rate_interval` as 5m (the other variables are inside label values).
#[test]
fn every_dashboard_query_is_valid_promql() {
    let mut rules = Vec::new();
    for path in files(&format!("{DIR}/dashboards"), ".json") {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(tests::root().join(&path)).unwrap())
                .unwrap();
        let ctx = d["uid"].as_str().unwrap().replace('-', "_");
        for p in panels(&d) {
            for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                rules.push(serde_json::json!({
                    "record": format!("dashboard:{ctx}_panel{}_{}:query", p["id"], t["refId"].as_str().unwrap()),
                    "expr": t["expr"].as_str().unwrap().replace("$__rate_interval", "5m"),
                }));
            }
        }
    }
    assert!(!rules.is_empty(), "no dashboard queries");
    let doc = serde_json::json!({"groups": [{"name": "dashboard-queries", "rules": rules}]});
    let file = std::env::temp_dir().join(format!(
        "fleet-dashboard-queries-{}.yml",
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let checked = std::panic::catch_unwind(|| {
        promtool(&["check", "rules"], &[file.display().to_string()]);
    });
    let _ = std::fs::remove_file(&file);
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_rules_use_is_exported_by_the_running_contexts() {
    let used = used_metrics(false);
    let bounds = rule_bucket_bounds();
    assert!(
        !bounds.is_empty(),
        "the rules select histogram buckets by their bound"
    );
    assert!(
        used.contains_key("http_requests_total"),
        "the extraction found the rules' metrics: {used:?}"
    );

    let sys = TestSystem::start_with(&["accounts", "payments", "settlement"]).await;
    // One payment through the three contexts: requests, decisions, every relay and
    // every consumer record their metrics.
    let card = sys.card_known_to_payments(100_000).await;
    sys.authorize_and_capture(&card, 1_000, "m-1").await;
    // Settlement files the capture before the run closes its batch.
    let batches = format!("{}/v1/settlement-batches?merchant_id=m-1", sys.settlement);
    sys.eventually("settlement to file the capture", WAIT, || async {
        let r = sys.get(&batches).await;
        (r.body["data"].as_array().is_some_and(|b| !b.is_empty())).then_some(())
    })
    .await;
    sys.run_settlement().await;
    // An event nobody subscribes to: the broker returns it and payments' relay counts
    // an unroutable publish (outbox_publish_failures_total). It stays in the outbox.
    sys.exec(&unroutable_outbox_row()).await;

    // Wait until the events have been handled and every used metric shows up (gauges
    // of queue depths are sampled every 10 s), or give up and report what is missing.
    let started = Instant::now();
    let (missing, exported) = loop {
        let mut exported = BTreeMap::new();
        for (ctx, base) in [
            ("accounts", &sys.accounts),
            ("payments", &sys.payments),
            ("settlement", &sys.settlement),
        ] {
            let text = sys.fetch_text(&format!("{base}/metrics")).await;
            exported.insert(ctx, Exposition::parse(&text));
        }
        let mut missing = missing(&used, &exported);
        for (bucket, le, path) in &bounds {
            if !exported.values().any(|e| e.has_bound(bucket, *le)) {
                missing.push(format!(
                    "{bucket}: no le=\"{le}\" bucket, which {path} selects (exported bounds: {:?})",
                    exported
                        .values()
                        .filter_map(|e| e.bounds.get(bucket))
                        .next()
                ));
            }
        }
        if missing.is_empty() || started.elapsed() > WAIT {
            break (missing, exported);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    sys.shutdown().await;
    let families: BTreeMap<&str, Vec<&String>> = exported
        .iter()
        .map(|(ctx, e)| (*ctx, e.types.keys().collect()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} metric(s) or bucket(s) used in {DIR}/rules are not exported by any context:\n{}\n\nexported families: {families:#?}",
        missing.len(),
        missing.join("\n")
    );
}

/// Dashboards may show metrics that a short run does not produce (pruning, redeliveries),
/// so they are checked against the code: every metric they and the rules query is
/// recorded by a `counter!`, `gauge!` or `histogram!` of a context or the shared kernel,
/// and a `_bucket` by a `histogram!`.
#[test]
fn every_metric_the_rules_and_dashboards_use_is_recorded_by_the_code() {
    let recorded = recorded_metrics();
    assert!(
        recorded.get("http_requests_total").map(String::as_str) == Some("counter"),
        "the scan found the code's metrics: {recorded:?}"
    );
    let mut problems = Vec::new();
    for (name, paths) in used_metrics(true) {
        let histogram = |base: &str| recorded.get(base).map(String::as_str) == Some("histogram");
        let found = recorded.contains_key(&name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(histogram));
        if !found {
            problems.push(format!(
                "{name} (used in {})",
                paths.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} metric(s) used in {DIR} are recorded nowhere in the code (a `_bucket` needs a \
         histogram):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_metric_name_extraction_reads_promql_right() {
    let expr = r#"
        (
          sum by (queue) (rate(consumer_event_age_seconds_bucket{le=~"30(\\.0)?"}[5m] offset 1h))
          or vector(0)
        ) / on (queue) group_left sum without (instance) (rate(consumer_event_age_seconds_count[$__rate_interval]))
        > bool 14.4 * 1e-3
        and slo:authorization_errors:ratio_rate5m
        unless outbox_backlog
        + max(db_pool_connections{state="in_use", route="/v1/authorizations/{id}/captures"})
        # a comment naming not_a_metric
        * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{route="$route"}[5m])))
        - build_info - topk(3, outbox_published_total) - Inf - NaN
    "#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "build_info",
            "consumer_event_age_seconds_bucket",
            "consumer_event_age_seconds_count",
            "db_pool_connections",
            "http_request_duration_seconds_bucket",
            "outbox_backlog",
            "outbox_published_total",
        ]
    );

    let exposition = Exposition::parse(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
         # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{x=\"y\",le=\"30.0\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.05\nh_count 1\n\
         # TYPE s summary\ns{quantile=\"0.5\"} 0.1\ns_sum 0.1\ns_count 1\nplain 1\n",
    );
    assert!(exposition.has_bound("h_bucket", 0.1));
    assert!(exposition.has_bound("h_bucket", 30.0));
    assert!(!exposition.has_bound("h_bucket", 0.25));
    let ctx = BTreeMap::from([("ctx", exposition)]);
    let used = |names: &[&str]| -> BTreeMap<String, BTreeSet<String>> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), BTreeSet::from(["rules/x.yml".to_owned()])))
            .collect()
    };
    assert!(missing(
        &used(&["a_total", "h_bucket", "h_sum", "h_count", "s_sum", "s_count", "plain"]),
        &ctx
    )
    .is_empty());
    assert_eq!(
        variable_query(r#"label_values(consumer_queue_messages{queue=~".+"}, queue)"#),
        r#"consumer_queue_messages{queue=~".+"}"#
    );
    assert_eq!(variable_query("label_values(queue)"), "");
    assert_eq!(
        bucket_bounds(
            r#"rate(a_bucket{method="POST",le="0.25"}[5m]) / rate(b_bucket{le=~"30(\\.0)?", queue="q"}[1h]) + c_bucket{le="+Inf"}"#
        ),
        [("a_bucket".to_owned(), 0.25), ("b_bucket".to_owned(), 30.0)]
    );
    let gaps = missing(&used(&["s_bucket", "other", "other_bucket"]), &ctx);
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    assert!(gaps[2].contains("a summary"), "{gaps:?}");
}

/// Runs promtool with `args` and then `files`, from the repository root; fails with its
/// output unless it succeeds.
fn promtool(args: &[&str], files: &[String]) {
    let out = match Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(tests::root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: install Debian's prometheus package \
             (apt-get install prometheus), which provides promtool"
        ),
        Err(e) => panic!("running promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool {} {} failed ({}):\n{}{}",
        args.join(" "),
        files.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of `dir` (relative to the root) ending in `suffix`, as relative paths, sorted.
fn files(dir: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(tests::root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(tests::root().join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every rule of every rule file, with the file it is in.
fn rules() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in files(&format!("{DIR}/rules"), ".yml") {
        let doc = yaml(&path);
        for group in doc["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                out.push((path.clone(), rule.clone()));
            }
        }
    }
    out
}

fn alerts() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (path, rule) in rules() {
        if let Some(name) = rule["alert"].as_str() {
            let previous = out.insert(name.to_owned(), rule.clone());
            assert!(previous.is_none(), "{path}: alert {name} is defined twice");
        }
    }
    out
}

/// The alerts that some promtool test expects to fire, and those that some test expects
/// to be quiet (`exp_alerts: []`) at an evaluation time.
fn tested_alerts() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for path in files(&format!("{DIR}/tests"), ".yml") {
        let doc = yaml(&path);
        for test in doc["tests"].as_array().unwrap() {
            for case in test["alert_rule_test"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let name = case["alertname"].as_str().unwrap().to_owned();
                match case["exp_alerts"].as_array() {
                    Some(a) if !a.is_empty() => firing.insert(name),
                    _ => quiet.insert(name),
                };
            }
        }
    }
    (firing, quiet)
}

/// Every panel of a dashboard, those inside collapsed rows too.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        out.push(p);
        for inner in p["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            out.push(inner);
        }
    }
    out
}

/// Raw metric names used by the rules' expressions (and, with `dashboards`, the
/// dashboards' queries and query variables), each with the files that use it. Recording
/// rules' names (with a ':') are not raw metrics.
fn used_metrics(dashboards: bool) -> BTreeMap<String, BTreeSet<String>> {
    let mut exprs: Vec<(String, String)> = Vec::new();
    for (path, rule) in rules() {
        exprs.push((path, rule["expr"].as_str().unwrap().to_owned()));
    }
    let boards = if dashboards {
        files(&format!("{DIR}/dashboards"), ".json")
    } else {
        Vec::new()
    };
    for path in boards {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(tests::root().join(&path)).unwrap())
                .unwrap();
        for p in panels(&d) {
            for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(e) = t["expr"].as_str() {
                    exprs.push((path.clone(), e.to_owned()));
                }
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                let q = v["query"]["query"].as_str().or(v["query"].as_str());
                exprs.push((path.clone(), variable_query(q.unwrap_or(""))));
            }
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, expr) in exprs {
        for name in metric_names(&expr) {
            out.entry(name).or_default().insert(path.clone());
        }
    }
    out
}

/// The bucket bounds the rules select: (`<histogram>_bucket`, bound, rule file) for each
/// `le="V"` or `le=~"V..."` matcher (a regex is read up to its first character that is not
/// part of a number, so `30(\\.0)?` is 30).
fn rule_bucket_bounds() -> Vec<(String, f64, String)> {
    let mut out = Vec::new();
    for (path, rule) in rules() {
        for (bucket, le) in bucket_bounds(rule["expr"].as_str().unwrap()) {
            if !out.iter().any(|(b, l, _)| *b == bucket && *l == le) {
                out.push((bucket, le, path.clone()));
            }
        }
    }
    out
}

/// The (`<name>_bucket`, bound) pairs an expression selects with an `le` matcher.
fn bucket_bounds(expr: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (at, _) in expr.match_indices("_bucket{") {
        let start = expr[..at]
            .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'))
            .map_or(0, |i| i + 1);
        let name = &expr[start..at + "_bucket".len()];
        let matchers = &expr[at + "_bucket{".len()..];
        let matchers = &matchers[..matchers.find('}').unwrap_or(matchers.len())];
        for part in matchers.split(',') {
            let part = part.trim();
            let value = part
                .strip_prefix("le=~\"")
                .or_else(|| part.strip_prefix("le=\""));
            let number: String = value
                .unwrap_or("")
                .chars()
                .take_while(|ch| ch.is_ascii_digit() || *ch == '.')
                .collect();
            if let Ok(le) = number.parse::<f64>() {
                out.push((name.to_owned(), le));
            }
        }
    }
    out
}

/// The PromQL in a Grafana variable query: `label_values(<expr>, <label>)` names a
/// label after its expression; `label_values(<label>)` names no metric.
fn variable_query(q: &str) -> String {
    let q = q.trim();
    match q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(args) => args
            .rsplit_once(',')
            .map(|(expr, _label)| expr.to_owned())
            .unwrap_or_default(),
        None => q.to_owned(),
    }
}

/// PromQL keywords: binary operators, modifiers, literals.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];
/// Keywords followed by a parenthesized list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Aggregation operators, which may be followed by `by (...)` before their `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression selects: identifiers that are not keywords,
/// functions or aggregations, outside strings, label matchers, ranges and label lists,
/// without recording rules' names (with a ':'). Grafana's `$variables` are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let c: Vec<char> = expr.chars().collect();
    let ident = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '"' | '\'' | '`' => i = skip_string(&c, i),
            '{' => i = skip_to(&c, i, '}'),
            '[' => i = skip_to(&c, i, ']'),
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                while i < c.len() && (ident(c[i]) || c[i] == '{' || c[i] == '}') {
                    i += 1;
                }
            }
            ch if ch.is_ascii_digit() || ch == '.' => {
                // A number or a duration: 14.4, 1e-3, 0x1f, 5m.
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                    if (c[i] == 'e' || c[i] == 'E')
                        && i + 1 < c.len()
                        && (c[i + 1] == '-' || c[i + 1] == '+')
                    {
                        i += 1;
                    }
                    i += 1;
                }
            }
            ch if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' => {
                let start = i;
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let mut j = i;
                while j < c.len() && c[j].is_whitespace() {
                    j += 1;
                }
                let next = c.get(j).copied();
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    if LABEL_LISTS.contains(&lower.as_str()) && next == Some('(') {
                        i = skip_to(&c, j, ')');
                    }
                } else if next == Some('(') || AGGREGATIONS.contains(&word.as_str()) {
                    // A function or an aggregation.
                } else if !word.contains(':') {
                    out.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The index after the string that starts at `i`.
fn skip_string(c: &[char], i: usize) -> usize {
    let quote = c[i];
    let mut j = i + 1;
    while j < c.len() && c[j] != quote {
        if c[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// The index after the `close` that ends what starts at `i`, skipping strings.
fn skip_to(c: &[char], i: usize, close: char) -> usize {
    let mut j = i + 1;
    while j < c.len() && c[j] != close {
        if matches!(c[j], '"' | '\'' | '`') {
            j = skip_string(c, j);
        } else {
            j += 1;
        }
    }
    j + 1
}

/// The metric names of a Prometheus text exposition: those of its samples and, by
/// family, the types its `# TYPE` lines declare.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeSet<String>,
    types: BTreeMap<String, String>,
    /// The `le` bounds of each `_bucket` series.
    bounds: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut e = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    e.types.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                e.samples.insert(name.to_owned());
                if let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) {
                    if name.ends_with("_bucket") {
                        e.bounds
                            .entry(name.to_owned())
                            .or_default()
                            .insert(le.to_owned());
                    }
                }
            }
        }
        e
    }

    /// Whether the histogram series `bucket` has the bound `le` (compared as numbers, so
    /// "30" is "30.0").
    fn has_bound(&self, bucket: &str, le: f64) -> bool {
        self.bounds
            .get(bucket)
            .is_some_and(|b| b.iter().any(|v| v.parse::<f64>().ok() == Some(le)))
    }

    /// Whether `name` is exported here: as a sample, as a family, or as the `_sum` or
    /// `_count` of a histogram or summary. A `_bucket` needs a histogram.
    fn has(&self, name: &str) -> Result<(), String> {
        if self.samples.contains(name) || self.types.contains_key(name) {
            return Ok(());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            match self.types.get(base).map(String::as_str) {
                Some("histogram") => return Ok(()),
                Some("summary") if suffix != "_bucket" => return Ok(()),
                Some(kind) => {
                    return Err(format!("{base} is exported as a {kind}, without buckets"))
                }
                None => {}
            }
        }
        Err(NOT_EXPORTED.to_owned())
    }
}

/// The used metrics no context exports, each with why and where it is used.
fn missing(
    used: &BTreeMap<String, BTreeSet<String>>,
    exported: &BTreeMap<&str, Exposition>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, paths) in used {
        let results: Vec<Result<(), String>> = exported.values().map(|e| e.has(name)).collect();
        if results.iter().any(Result::is_ok) {
            continue;
        }
        // "exported as a summary" says more than "not exported".
        let why = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find(|r| *r != NOT_EXPORTED)
            .map_or(NOT_EXPORTED, String::as_str);
        out.push(format!(
            "{name}: {why} (used in {})",
            paths.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

const NOT_EXPORTED: &str = "not exported";

/// The metrics the contexts and the shared kernel record, by the macro that records them:
/// `counter!("name"`, `gauge!("name"`, `histogram!("name"`.
fn recorded_metrics() -> BTreeMap<String, String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut sources = Vec::new();
    for crate_ in ["shared-kernel", "accounts", "payments", "settlement"] {
        walk(&tests::root().join(crate_).join("src"), &mut sources);
    }
    let mut out = BTreeMap::new();
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        for kind in ["counter", "gauge", "histogram"] {
            for (at, _) in text.match_indices(&format!("{kind}!(")) {
                let rest = text[at + kind.len() + 2..].trim_start();
                if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    out.insert(name.to_owned(), kind.to_owned());
                }
            }
        }
    }
    out
}

/// SQL adding to payments' outbox an event whose type no queue is bound to.
fn unroutable_outbox_row() -> String {
    let id = uuid::Uuid::new_v4();
    let event = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": "/payments",
        "type": "payments.observability_probe.v1",
        "time": chrono::Utc::now().to_rfc3339(),
        "subject": "probe",
        "datacontenttype": "application/json",
        "sequence": 1,
        "data": {},
    });
    format!(
        "INSERT INTO payments.outbox (event_id, event_type, payload) \
         VALUES ('{id}', 'payments.observability_probe.v1', '{event}'::jsonb)"
    )
}
