//! `<ctx> migrate`, as a Kubernetes migration Job runs it: the owner's database URL is
//! the only setting it needs (no token key, no broker, no Vault), so the Job holds no
//! other secret of the service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use tests::infra::{Infra, TestDatabase};

const CONTEXTS: [&str; 3] = ["accounts", "payments", "settlement"];

fn migrate(context: &str, env: &[(String, String)]) -> (bool, String) {
    let bin = tests::procs::bin_dir().join(context);
    assert!(
        bin.exists(),
        "build the binaries first (cargo build --workspace --bins)"
    );
    let out = Command::new(bin)
        .arg("migrate")
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn applied(db: &TestDatabase, schema: &str) -> i64 {
    let (url, sql) = (
        db.url.clone(),
        format!("SELECT count(*) AS n FROM {schema}.__diesel_schema_migrations"),
    );
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        diesel::sql_query(sql).get_result::<N>(&mut conn).unwrap().n
    })
    .await
    .unwrap()
}

fn migrations_of(context: &str) -> i64 {
    std::fs::read_dir(tests::root().join(context).join("migrations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("up.sql").exists())
        .count() as i64
}

#[tokio::test]
async fn each_context_migrates_with_the_owners_url_and_nothing_else() {
    let infra = Infra::get().await;
    let db = TestDatabase::create(&infra.postgres_admin_url).await;
    for context in CONTEXTS {
        let owner = db.url_as(&format!("{context}_owner"));
        let var = format!("{}__DATABASE__MIGRATION_URL", context.to_uppercase());
        let (ok, out) = migrate(context, &[(var, owner.clone())]);
        assert!(ok, "{context} migrate failed:\n{out}");
        assert_eq!(
            applied(&db, context).await,
            migrations_of(context),
            "{context}"
        );
        // Run again: nothing left to do, and still nothing else needed.
        let (ok, out) = migrate(context, &[("FLEET__DATABASE__URL".into(), owner)]);
        assert!(ok, "{context} migrate (second run) failed:\n{out}");
    }
    // Without a URL it refuses, naming the setting it needs.
    let (ok, out) = migrate("payments", &[]);
    assert!(!ok, "migrate succeeded without a database URL:\n{out}");
    assert!(out.contains("PAYMENTS__DATABASE__URL"), "{out}");
    db.drop_now().await;
}
