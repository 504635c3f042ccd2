//! Least privilege in PostgreSQL (ADR 0017): connected as each context's runtime and
//! owner roles, what the role needs works and everything else is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::SimpleConnection;
use diesel::Connection;
use tests::TestSystem;

const CONTEXTS: [&str; 3] = ["accounts", "payments", "settlement"];

/// Runs each statement in its own transaction (rolled back) as `url`'s role; returns
/// the error of each, or None where it succeeded.
async fn try_as(url: String, statements: Vec<String>) -> Vec<(String, Option<String>)> {
    tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        statements
            .into_iter()
            .map(|sql| {
                conn.batch_execute("BEGIN").unwrap();
                let result = conn.batch_execute(&sql).err().map(|e| e.to_string());
                conn.batch_execute("ROLLBACK").unwrap();
                (sql, result)
            })
            .collect()
    })
    .await
    .unwrap()
}

fn expect(results: &[(String, Option<String>)], sql: &str, refusal: Option<&str>) {
    let (_, got) = results.iter().find(|(s, _)| s == sql).unwrap();
    match (refusal, got) {
        (None, None) => {}
        (None, Some(e)) => panic!("{sql}: should work, was refused: {e}"),
        (Some(want), None) => panic!("{sql}: should be refused ({want}), worked"),
        (Some(want), Some(e)) => assert!(e.contains(want), "{sql}: {e} (wanted {want})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_context_role_reaches_only_what_it_needs() {
    let sys = TestSystem::start().await;
    // Something in every log, so the refusals below are about rights, not empty tables.
    let card = sys.card_known_to_payments(1_000).await;
    sys.authorize_and_capture(&card, 100, "m-roles").await;
    sys.run_settlement().await;

    for ctx in CONTEXTS {
        let others: Vec<&str> = CONTEXTS.iter().copied().filter(|c| *c != ctx).collect();
        let app = format!("{ctx}_app");
        let mut statements = vec![
            format!("SELECT count(*) FROM {ctx}.outbox"),
            format!("UPDATE {ctx}.outbox SET attempts = attempts WHERE false"),
            format!("DELETE FROM {ctx}.inbox WHERE false"),
            format!("SELECT count(*) FROM {ctx}.audit_events"),
            format!("UPDATE {ctx}.audit_events SET subject = 'x'"),
            format!("DELETE FROM {ctx}.audit_events"),
            format!("TRUNCATE {ctx}.audit_events"),
            format!("SELECT * FROM {ctx}.__diesel_schema_migrations"),
            format!("CREATE TABLE {ctx}.evil (id int)"),
            "CREATE TABLE public.evil (id int)".to_owned(),
            "CREATE SCHEMA evil".to_owned(),
            format!("DROP TABLE {ctx}.outbox"),
            format!("ALTER TABLE {ctx}.outbox ADD COLUMN evil int"),
        ];
        for other in &others {
            statements.push(format!("SELECT count(*) FROM {other}.outbox"));
            statements.push(format!("SELECT count(*) FROM {other}.audit_events"));
        }
        let r = try_as(sys.database.url_as(&app), statements).await;
        expect(&r, &format!("SELECT count(*) FROM {ctx}.outbox"), None);
        expect(
            &r,
            &format!("UPDATE {ctx}.outbox SET attempts = attempts WHERE false"),
            None,
        );
        expect(&r, &format!("DELETE FROM {ctx}.inbox WHERE false"), None);
        expect(
            &r,
            &format!("SELECT count(*) FROM {ctx}.audit_events"),
            None,
        );
        let denied_audit = "permission denied for table audit_events";
        expect(
            &r,
            &format!("UPDATE {ctx}.audit_events SET subject = 'x'"),
            Some(denied_audit),
        );
        expect(
            &r,
            &format!("DELETE FROM {ctx}.audit_events"),
            Some(denied_audit),
        );
        expect(
            &r,
            &format!("TRUNCATE {ctx}.audit_events"),
            Some(denied_audit),
        );
        expect(
            &r,
            &format!("SELECT * FROM {ctx}.__diesel_schema_migrations"),
            Some("permission denied for table __diesel_schema_migrations"),
        );
        expect(
            &r,
            &format!("CREATE TABLE {ctx}.evil (id int)"),
            Some(&format!("permission denied for schema {ctx}")),
        );
        expect(
            &r,
            "CREATE TABLE public.evil (id int)",
            Some("permission denied for schema public"),
        );
        expect(
            &r,
            "CREATE SCHEMA evil",
            Some("permission denied for database"),
        );
        expect(
            &r,
            &format!("DROP TABLE {ctx}.outbox"),
            Some("must be owner of table outbox"),
        );
        expect(
            &r,
            &format!("ALTER TABLE {ctx}.outbox ADD COLUMN evil int"),
            Some("must be owner of table outbox"),
        );
        for other in &others {
            for table in ["outbox", "audit_events"] {
                expect(
                    &r,
                    &format!("SELECT count(*) FROM {other}.{table}"),
                    Some(&format!("permission denied for schema {other}")),
                );
            }
        }

        // The owner changes its schema, and nothing else; not even it rewrites the log.
        let owner = format!("{ctx}_owner");
        let mut statements = vec![
            format!("CREATE TABLE {ctx}.scratch (id int)"),
            format!("UPDATE {ctx}.audit_events SET subject = 'x'"),
            format!("DELETE FROM {ctx}.audit_events"),
            "CREATE TABLE public.evil (id int)".to_owned(),
            "CREATE SCHEMA evil".to_owned(),
        ];
        for other in &others {
            statements.push(format!("SELECT count(*) FROM {other}.outbox"));
        }
        let r = try_as(sys.database.url_as(&owner), statements).await;
        expect(&r, &format!("CREATE TABLE {ctx}.scratch (id int)"), None);
        for sql in [
            format!("UPDATE {ctx}.audit_events SET subject = 'x'"),
            format!("DELETE FROM {ctx}.audit_events"),
        ] {
            expect(&r, &sql, Some("audit_events is append-only"));
        }
        expect(
            &r,
            "CREATE TABLE public.evil (id int)",
            Some("permission denied for schema public"),
        );
        expect(
            &r,
            "CREATE SCHEMA evil",
            Some("permission denied for database"),
        );
        for other in &others {
            expect(
                &r,
                &format!("SELECT count(*) FROM {other}.outbox"),
                Some(&format!("permission denied for schema {other}")),
            );
        }
    }
    // The services themselves run as the runtime roles.
    let users = sys
        .text(
            "SELECT string_agg(DISTINCT usename, ',' ORDER BY usename) AS value
             FROM pg_stat_activity WHERE datname = current_database() AND usename LIKE '%\\_app'",
        )
        .await;
    assert_eq!(users, "accounts_app,payments_app,settlement_app");
    sys.shutdown().await;
}
