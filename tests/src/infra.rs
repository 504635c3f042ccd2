//! Finds the infrastructure: the services named by environment variables (`cargo xtask
//! test` names its containers there, ADR 0021), else the machine's own on their default
//! ports.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use tokio::sync::OnceCell;

pub struct Infra {
    /// A superuser URL to the maintenance database (`postgres`).
    pub postgres_admin_url: String,
    pub amqp_url: String,
    /// Vault address and token, when one is available.
    pub vault: Option<(String, String)>,
}

static INFRA: OnceCell<Infra> = OnceCell::const_new();

fn answers(addr: &str) -> bool {
    addr.parse()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

impl Infra {
    pub async fn get() -> &'static Infra {
        INFRA.get_or_init(discover).await
    }
}

/// The variable `cargo xtask test` sets to `containers` or `local`.
pub const MODE_VAR: &str = "FLEET_TEST_INFRA";

/// Whether this run's infrastructure is containers (`cargo xtask test` started them).
pub fn in_containers() -> bool {
    std::env::var(MODE_VAR).is_ok_and(|m| m == "containers")
}

/// The URL in `var`, else `local` when something answers on `addr`.
fn named_or_local(var: &str, addr: &str, local: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        assert!(
            answers(addr),
            "{var} is unset and nothing answers on {addr} (`cargo xtask test` starts \
             containers when there is a container engine)"
        );
        local.to_owned()
    })
}

async fn discover() -> Infra {
    let postgres_admin_url = named_or_local(
        "FLEET_TEST_DATABASE_URL",
        "127.0.0.1:5432",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let amqp_url = named_or_local(
        "FLEET_TEST_AMQP_URL",
        "127.0.0.1:5672",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let vault = match (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) {
        (Ok(addr), Ok(token)) => Some((addr, token)),
        _ => start_dev_vault().await,
    };
    Infra {
        postgres_admin_url,
        amqp_url,
        vault,
    }
}

/// The OpenBao binary: the project-local install, else `bao` on the PATH.
fn bao() -> String {
    let local = concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/venv/bin/bao");
    if std::path::Path::new(local).exists() {
        local.to_owned()
    } else {
        "bao".to_owned()
    }
}

/// Starts an OpenBao development server for this test process (it stops when the
/// process ends), from the project-local install or the PATH.
async fn start_dev_vault() -> Option<(String, String)> {
    let bao = bao();
    let port = crate::procs::free_port();
    let token = uuid::Uuid::new_v4().to_string();
    let script = format!(
        "{bao} server -dev -dev-listen-address=127.0.0.1:{port} >/dev/null 2>&1 & B=$!; \
         while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill $B",
        pid = std::process::id()
    );
    // The root token goes by the environment, never on a command line.
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("VAULT_DEV_ROOT_TOKEN_ID", &token)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let addr = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if answers(&format!("127.0.0.1:{port}")) {
            return Some((addr, token));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A database of its own for one test.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

async fn admin_exec(admin_url: String, sql: String) {
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn = diesel::PgConnection::establish(&admin_url).expect("admin connection");
        conn.batch_execute(&sql).expect("admin statement");
    })
    .await
    .expect("admin task");
}

impl TestDatabase {
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("fleet_t_{}", uuid::Uuid::new_v4().simple());
        admin_exec(admin_url.to_owned(), format!("CREATE DATABASE {name}")).await;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("admin URL has no database part"),
        };
        let db = Self {
            name,
            url,
            admin_url: admin_url.to_owned(),
        };
        db.provision_roles().await;
        db
    }

    /// Gives every context its owner and runtime roles in this database (ADR 0017). The
    /// runtime roles may read replication slots only when the suite runs the cdc relay.
    async fn provision_roles(&self) {
        let cdc = std::env::var("FLEET__OUTBOX__MODE").is_ok_and(|m| m == "cdc");
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            use diesel::Connection;
            let mut conn = diesel::PgConnection::establish(&url).expect("admin connection");
            for schema in ["accounts", "payments", "settlement"] {
                shared_kernel::roles::provision(&mut conn, schema, cdc).expect("roles provisioned");
            }
        })
        .await
        .expect("provisioning task");
    }

    /// This database as `role` (trust authentication on the test machine).
    pub fn url_as(&self, role: &str) -> String {
        shared_kernel::roles::url_as(&self.url, role).expect("a PostgreSQL URL")
    }

    /// `common` for one context: it runs as `<context>_app` and migrates as
    /// `<context>_owner`.
    pub fn settings_for(
        &self,
        context: &str,
        common: &shared_kernel::config::CommonSettings,
    ) -> shared_kernel::config::CommonSettings {
        let roles = shared_kernel::roles::of(context).expect("a context name");
        let mut own = common.clone();
        own.database_url = shared_kernel::secrets::Secret::new(self.url_as(&roles.app));
        own.migration_url = Some(shared_kernel::secrets::Secret::new(
            self.url_as(&roles.owner),
        ));
        own
    }

    pub async fn drop_now(self) {
        // A slot a relay is reading blocks DROP DATABASE, even WITH (FORCE).
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || {
            use diesel::Connection;
            if let Ok(mut conn) = diesel::PgConnection::establish(&admin) {
                let _ = shared_kernel::outbox::drop_slots_for_database(&mut conn, &name);
            }
        })
        .await
        .expect("slot clean-up task");
        admin_exec(
            self.admin_url.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

/// Deletes the queues and exchanges a test system declared under `prefix`.
pub async fn delete_broker_names(amqp_url: &str, prefix: &str) {
    shared_kernel::amqp::delete_all(amqp_url, prefix).await;
}

/// An OpenBao development server of one test's own, which the test can stop (to see
/// the system without Vault); stopped when dropped.
pub struct OwnVault {
    pub addr: String,
    pub token: String,
    child: Option<std::process::Child>,
    /// Whether the database engine was set up (its leases are revoked when dropped).
    database: std::sync::atomic::AtomicBool,
}

impl OwnVault {
    pub async fn start() -> Self {
        let port = crate::procs::free_port();
        let token = uuid::Uuid::new_v4().to_string();
        let child = Command::new(bao())
            .args(["server", "-dev"])
            .env("VAULT_DEV_ROOT_TOKEN_ID", &token)
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("OpenBao starts (install it with cargo xtask test, into .tools/venv)");
        for _ in 0..100 {
            if answers(&format!("127.0.0.1:{port}")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            addr: format!("http://127.0.0.1:{port}"),
            token,
            child: Some(child),
            database: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sets up Vault's database secrets engine (mount `database`) on `db` for
    /// `context`'s service, as an operator would (ADR 0020): a connection `db.name` that
    /// Vault reaches as the superuser of the admin URL, and a role `<context>-app` whose
    /// users are members of `<context>_app` and live `default_ttl`, renewable up to
    /// `max_ttl`. Returns the role's name. The users get `REPLICATION` when the suite
    /// runs the cdc relay, like the runtime roles.
    pub async fn configure_database(
        &self,
        db: &TestDatabase,
        context: &str,
        default_ttl: Duration,
        max_ttl: Duration,
    ) -> String {
        let cdc = std::env::var("FLEET__OUTBOX__MODE").is_ok_and(|m| m == "cdc");
        let role = format!("{context}-app");
        let (scheme_user, host) = db
            .url
            .split_once('@')
            .expect("the test database URL names its user");
        let user = scheme_user
            .rsplit_once("://")
            .map_or(scheme_user, |(_, u)| u)
            .split(':')
            .next()
            .unwrap_or("postgres");
        self.database
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let creation = shared_kernel::roles::dynamic_user_creation(context, cdc).unwrap();
        let revocation = shared_kernel::roles::dynamic_user_revocation();
        self.vault_write(
            "sys/mounts/database",
            serde_json::json!({"type": "database"}),
        )
        .await;
        self.vault_write(
            &format!("database/config/{}", db.name),
            serde_json::json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@{host}{}",
                    if host.contains('?') { "" } else { "?sslmode=disable" }
                ),
                "username": user,
                // Trust authentication on the test machine: any password will do.
                "password": "unused",
                "allowed_roles": [role],
                "verify_connection": true,
            }),
        )
        .await;
        self.vault_write(
            &format!("database/roles/{role}"),
            serde_json::json!({
                "db_name": db.name,
                "creation_statements": creation,
                "revocation_statements": revocation,
                "default_ttl": default_ttl.as_secs(),
                "max_ttl": max_ttl.as_secs(),
            }),
        )
        .await;
        role
    }

    /// Ends every lease of the database engine now (synchronously): Vault drops their
    /// users. Roles belong to the whole cluster, so a test leaves none behind.
    pub async fn revoke_database_leases(&self) {
        self.vault_write(
            "sys/leases/revoke-prefix/database/creds",
            serde_json::json!({"sync": true}),
        )
        .await;
    }

    /// A write to this Vault that must succeed.
    pub async fn vault_write(&self, path: &str, body: serde_json::Value) {
        let res = reqwest::Client::new()
            .put(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Vault answers {path}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(status.is_success(), "Vault {path}: {status} {text}");
    }

    /// Stops the server: from now on Vault does not answer.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnVault {
    fn drop(&mut self) {
        // A test that ended early leaves no database users behind either.
        if self.child.is_some() && self.database.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new(bao())
                .args(["lease", "revoke", "-sync", "-prefix", "database/creds/"])
                .env("BAO_ADDR", &self.addr)
                .env("BAO_TOKEN", &self.token)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        self.stop();
    }
}

/// Drops these login roles of the cluster when dropped: users a stopped Vault can no
/// longer revoke. Roles belong to the whole cluster, so a test leaves none behind.
pub struct DropRolesOnExit {
    admin_url: String,
    names: std::sync::Mutex<Vec<String>>,
}

impl DropRolesOnExit {
    pub async fn new() -> Self {
        Self {
            admin_url: Infra::get().await.postgres_admin_url.clone(),
            names: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn add(&self, name: &str) {
        if let Ok(mut names) = self.names.lock() {
            names.push(name.to_owned());
        }
    }
}

impl Drop for DropRolesOnExit {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        if names.is_empty() {
            return;
        }
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            for name in names {
                let _ = conn.batch_execute(&format!(
                    "DROP ROLE IF EXISTS \"{}\"",
                    name.replace('"', "\"\"")
                ));
            }
        }
    }
}
