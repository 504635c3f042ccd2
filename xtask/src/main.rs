//! `cargo xtask <command>`: run the system, its migrations and its tests.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod audit;
mod auth;
mod bench;
mod contracts;
mod db;
mod dev;
mod engine;
mod events;
mod fuzz;
mod images;
mod infra;
mod keys;
mod pg;
mod projections;
mod test;
mod token;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Development tasks for the fleet card platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrations, then the three services (and a development OpenBao when no Vault is configured).
    Up,
    /// Every test against real PostgreSQL, RabbitMQ and OpenBao (what CI runs).
    Test {
        /// What to test against: fresh containers (the default when a container engine
        /// is available) or this machine's own services.
        #[arg(long, value_enum)]
        infra: Option<test::Infra>,
        /// Extra arguments for the test runner (a filter, for example), and `--faults` or
        /// `--no-faults`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Format check, clippy with warnings denied, the contract checks, then the tests.
    Ci,
    /// Event pipeline benchmark (release build): end-to-end latency under load and relay
    /// throughput, polling and cdc side by side, as a markdown table. Not part of `test`.
    Bench {
        /// How long the steady load runs, in seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// How many outbox rows the throughput measurement publishes.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
    /// The container engine: Docker when its API answers, else podman (ADR 0021).
    Engine {
        #[command(subcommand)]
        command: EngineCommand,
    },
    /// Builds every image with no registry (base, runtime, PostgreSQL, RabbitMQ, OpenBao,
    /// one per context); each is rebuilt only when its inputs change.
    Images {
        /// Only the infrastructure images (no release build of the contexts).
        #[arg(long)]
        infra_only: bool,
    },
    /// Database tasks.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Contract tasks: breaking-change check against another revision.
    Contracts {
        #[command(subcommand)]
        command: ContractsCommand,
    },
    /// The audit logs: check a context's hash chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Token signing keys in Vault: rotate, retire.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Parked messages: list them, or return them to their queues.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// The card-number encryption key: status, rotation, re-wrap and retirement of old
    /// versions (the fingerprint key is never rotated).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Projections of other contexts' events.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Prints a signed JWT (the default scopes unless --scope is given; `cards:reveal`
    /// only when asked for): with the newest key in Vault when FLEET__AUTH__VAULT_PATH is
    /// set, else with the development key.
    Token {
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Token lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Binds the token to this program (tenant); without it, a platform token.
        #[arg(long)]
        program: Option<String>,
    },
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Installs podman, runc and debootstrap (Debian) and writes the configuration this
    /// kind of machine needs (runc, cgroupfs, capped ulimits).
    Setup,
    /// Runs a command with DOCKER_HOST set to the engine; podman's API service lives as
    /// long as the command.
    Run {
        #[arg(trailing_var_arg = true, required = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Writes a new Ed25519 signing key as the newest version of the Vault secret;
    /// prints {"kid":..,"version":..}. The previous key stays accepted.
    RotateKey,
    /// Deletes one version of the Vault secret, so services stop accepting its key.
    RetireKey {
        /// The version to retire.
        #[arg(long)]
        version: u64,
        /// Destroy the version for good instead of deleting it.
        #[arg(long)]
        destroy: bool,
    },
}

#[derive(Subcommand)]
enum ContractsCommand {
    /// Fails when OpenAPI or AsyncAPI changed incompatibly since a git revision.
    Check {
        /// The revision to compare with (a branch, tag or commit).
        #[arg(long, default_value = "HEAD")]
        against: String,
    },
    /// Proves the check: breaking edits of the contracts fail it, additive ones pass.
    Selftest,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Lists parked messages with the reason each was parked.
    Parked {
        /// One consumer queue, e.g. settlement.payments-events (default: all).
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Returns parked messages to the queue they were parked from.
    ReplayParked {
        #[arg(long)]
        queue: Option<String>,
        /// Only the message of this event id.
        #[arg(long)]
        event_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// The key versions, and how many stored card ciphertexts are on each.
    Status,
    /// Adds a version to the transit key `pan`; new cards are encrypted with it.
    Rotate,
    /// Re-wraps every stored card ciphertext not on the newest `pan` version (in Vault;
    /// no plaintext leaves it).
    Rewrap {
        /// Cards per database transaction.
        #[arg(long, default_value_t = accounts::card_keys::DEFAULT_BATCH)]
        batch: i64,
    },
    /// Retires the `pan` versions older than the newest (min_decryption_version); refused
    /// while any stored ciphertext is older.
    Retire,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Rebuilds a projection from its producer's retained event history.
    Rebuild {
        /// The consuming context (payments).
        context: String,
        /// The projection (accounts, cards).
        projection: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks the hash chain of a context's audit log; names the first broken record.
    Verify {
        /// accounts, payments or settlement.
        context: String,
        /// The database (default: the context's configured one, else the development one).
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Runs every context's pending migrations in its own schema.
    Migrate,
    /// Drops and recreates the development database, then migrates it.
    Reset,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up => up::run(),
        Command::Engine {
            command: EngineCommand::Setup,
        } => engine::setup(),
        Command::Engine {
            command: EngineCommand::Run { args },
        } => {
            let code = engine::Engine::require()?.run(&args)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Images { infra_only } => images::run(infra_only),
        Command::Test { infra, args } => test::run(infra, &args),
        Command::Bench { seconds, events } => bench::run(seconds, events),
        Command::Ci => {
            dev::cargo(&["fmt", "--all", "--check"])?;
            dev::cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            dev::cargo(&["deny", "check", "licenses", "bans", "sources"])?;
            // Advisories need the RustSec database, which may be out of reach.
            if dev::cargo(&["deny", "fetch"]).is_ok() {
                dev::cargo(&["deny", "check", "--disable-fetch", "advisories"])?;
            } else {
                eprintln!(
                    "cargo deny: the advisory database is unreachable; advisories not checked"
                );
            }
            contracts::selftest()?;
            contracts::check("HEAD")?;
            test::run(None, &[])
        }
        Command::Db {
            command: DbCommand::Migrate,
        } => db::migrate(),
        Command::Db {
            command: DbCommand::Reset,
        } => db::reset(),
        Command::Contracts {
            command: ContractsCommand::Check { against },
        } => contracts::check(&against),
        Command::Contracts {
            command: ContractsCommand::Selftest,
        } => contracts::selftest(),
        Command::Events {
            command: EventsCommand::Parked { queue, limit },
        } => events::parked(queue.as_deref(), limit),
        Command::Events {
            command: EventsCommand::ReplayParked { queue, event_id },
        } => events::replay(queue.as_deref(), event_id.as_deref()),
        Command::Keys { command } => match command {
            KeysCommand::Status => keys::status(),
            KeysCommand::Rotate => keys::rotate(),
            KeysCommand::Rewrap { batch } => keys::rewrap(batch),
            KeysCommand::Retire => keys::retire(),
        },
        Command::Projections {
            command:
                ProjectionsCommand::Rebuild {
                    context,
                    projection,
                },
        } => projections::rebuild(&context, &projection),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    context,
                    database_url,
                },
        } => audit::verify(&context, database_url.as_deref()),
        Command::Token {
            scopes,
            ttl,
            program,
        } => token::print(&scopes, ttl, program.as_deref()),
        Command::Auth {
            command: AuthCommand::RotateKey,
        } => auth::rotate_key(),
        Command::Auth {
            command: AuthCommand::RetireKey { version, destroy },
        } => auth::retire_key(version, destroy),
    }
}
