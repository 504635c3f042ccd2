//! PostgreSQL roles per context (ADR 0017): `<context>_owner` owns the context's schema
//! and runs its migrations; `<context>_app` is what the service runs as, with only
//! SELECT, INSERT, UPDATE and DELETE on the schema's tables (the audit log: INSERT and
//! SELECT only; the migration history: nothing). Neither can reach another context's
//! schema, create anything outside its own, or create schemas.
//!
//! [`provision`] is what a database administrator runs once per database (as a
//! superuser); `cargo xtask db migrate` and the tests run it for their databases.

use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;

/// The two roles of a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    pub owner: String,
    pub app: String,
}

pub fn of(schema: &str) -> anyhow::Result<Roles> {
    crate::db::check_schema_name(schema)?;
    Ok(Roles {
        owner: format!("{schema}_owner"),
        app: format!("{schema}_app"),
    })
}

/// Creates the roles of `schema` when missing, and the schema owned by its owner, with
/// the runtime role's grants, in the database `conn` is connected to (as a superuser).
/// Objects already in the schema (made by another role before) are handed to the owner.
/// `replication` lets the runtime role read a logical replication slot, which the outbox
/// relay's cdc mode needs (ADR 0012); polling needs nothing of the kind.
pub fn provision(conn: &mut PgConnection, schema: &str, replication: bool) -> anyhow::Result<()> {
    let Roles { owner, app } = of(schema)?;
    let replication = if replication {
        "REPLICATION"
    } else {
        "NOREPLICATION"
    };
    let sql = format!(
        r#"
DO $$ BEGIN CREATE ROLE {owner} LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE {app} LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN
  IF (SELECT rolreplication FROM pg_roles WHERE rolname = '{app}') <> ('{replication}' = 'REPLICATION') THEN
    ALTER ROLE {app} {replication};
  END IF;
END $$;
DO $$ BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO {owner}, {app}', current_database());
END $$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};
ALTER SCHEMA {schema} OWNER TO {owner};
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p', 'v', 'S')
             AND pg_get_userbyid(c.relowner) <> '{owner}'
  LOOP
    EXECUTE format('ALTER %s {schema}.%I OWNER TO {owner}',
                   CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, r.relname);
  END LOOP;
END $$;
GRANT USAGE ON SCHEMA {schema} TO {app};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}
  GRANT USAGE, SELECT ON SEQUENCES TO {app};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {app};
DO $$ BEGIN
  IF to_regclass('{schema}.audit_events') IS NOT NULL THEN
    REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.audit_events FROM {app};
  END IF;
  IF to_regclass('{schema}.__diesel_schema_migrations') IS NOT NULL THEN
    REVOKE ALL ON {schema}.__diesel_schema_migrations FROM {app};
  END IF;
END $$;
"#
    );
    // Roles are shared by every database of the cluster: two databases provisioned at
    // once may race on them, which a second attempt settles.
    let mut last = None;
    for _ in 0..3 {
        match conn.batch_execute(&sql) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no attempt"), anyhow::Error::from))
        .with_context(|| format!("provisioning the roles of schema {schema}"))
}

/// What Vault's database engine runs to create a service's dynamic user (ADR 0020),
/// with its templates `{{name}}`, `{{password}}` and `{{expiration}}`: a login role that
/// expires with its lease and is a member of `<schema>_app`, so it has exactly the
/// runtime role's rights, with its schema first on the search path. `replication` as in
/// [`provision`] (the cdc relay; a role attribute, which membership does not pass on).
pub fn dynamic_user_creation(schema: &str, replication: bool) -> anyhow::Result<Vec<String>> {
    let Roles { app, .. } = of(schema)?;
    let replication = if replication { " REPLICATION" } else { "" };
    Ok(vec![
        format!(
            r#"CREATE ROLE "{{{{name}}}}" WITH LOGIN{replication} PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE {app};"#
        ),
        format!(r#"ALTER ROLE "{{{{name}}}}" SET search_path = {schema};"#),
    ])
}

/// What Vault's database engine runs when a dynamic user's lease ends: its sessions are
/// ended (PostgreSQL lets them run on after `DROP ROLE`), then the role is dropped. The
/// user owns nothing to hand over (no CREATE or TEMP anywhere: [`provision`]), and
/// `REASSIGN OWNED`/`DROP OWNED` would need Vault's administrative user to be a member of
/// every dynamic user, which `CREATEROLE` alone does not give.
pub fn dynamic_user_revocation() -> Vec<String> {
    vec![
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';"
            .to_owned(),
        r#"DROP ROLE IF EXISTS "{{name}}";"#.to_owned(),
    ]
}

/// `url` with its user replaced by `user` (and no password: one comes from the
/// environment, a `.pgpass` or Vault, never from this code).
pub fn url_as(url: &str, user: &str) -> anyhow::Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("not a PostgreSQL URL");
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Ok(format!("{scheme}://{user}@{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_and_urls() {
        assert_eq!(
            of("payments").unwrap(),
            Roles {
                owner: "payments_owner".into(),
                app: "payments_app".into()
            }
        );
        assert!(of("payments; DROP").is_err());
        assert_eq!(
            url_as(
                "postgres://postgres:pw@127.0.0.1:5432/fleet",
                "payments_app"
            )
            .unwrap(),
            "postgres://payments_app@127.0.0.1:5432/fleet"
        );
        assert_eq!(
            url_as("postgresql://127.0.0.1/fleet?sslmode=disable", "a_owner").unwrap(),
            "postgresql://a_owner@127.0.0.1/fleet?sslmode=disable"
        );
        assert!(url_as("127.0.0.1/fleet", "x").is_err());
    }

    #[test]
    fn dynamic_users_are_members_of_the_runtime_role() {
        let create = dynamic_user_creation("payments", false).unwrap();
        assert_eq!(
            create[0],
            r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE payments_app;"#
        );
        assert_eq!(
            create[1],
            r#"ALTER ROLE "{{name}}" SET search_path = payments;"#
        );
        assert!(dynamic_user_creation("payments", true).unwrap()[0].contains("LOGIN REPLICATION"));
        let revoke = dynamic_user_revocation();
        assert!(revoke[0].contains("pg_terminate_backend"));
        assert_eq!(revoke.last().unwrap(), r#"DROP ROLE IF EXISTS "{{name}}";"#);
        assert!(dynamic_user_creation("payments; DROP", false).is_err());
    }
}
