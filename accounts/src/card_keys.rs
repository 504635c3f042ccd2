//! The keys of card numbers (ADR 0014), and their rotation.
//!
//! - `pan` encrypts card numbers. It is rotated (`rotate`), the stored ciphertexts are
//!   re-wrapped onto its newest version inside Vault (`rewrap`, no plaintext ever leaves
//!   Vault), and then its older versions are retired (`retire`: min_decryption_version set
//!   to the newest, refused while any stored ciphertext is older).
//! - `pan-fingerprint` is the HMAC key of the card-number fingerprint, the blind index
//!   that finds duplicate numbers. Fingerprints are computed with its version 1 only, so
//!   they stay the same for good; it is never rotated or retired here, and must not be
//!   elsewhere (retiring its version 1 would make card issuance fail).
//!
//! Used by `cargo xtask keys`. Only ciphertexts pass through this module.

use crate::domain::card_keys::{self, VersionCounts};
use crate::store::card_keys as store;
use anyhow::Context;
use diesel::PgConnection;
use shared_kernel::db::PgPool;
use shared_kernel::vault::{KeyInfo, Transit};

/// Transit key that encrypts card numbers; rotated by `cargo xtask keys`.
pub const PAN_KEY: &str = "pan";
/// Transit HMAC key of the card-number fingerprint; never rotated.
pub const FINGERPRINT_KEY: &str = "pan-fingerprint";
/// The version of `FINGERPRINT_KEY` every fingerprint is computed with.
pub const FINGERPRINT_KEY_VERSION: u64 = 1;

/// Rows read and re-wrapped per database transaction by `rewrap`.
pub const DEFAULT_BATCH: i64 = 100;

pub struct CardKeys {
    transit: Transit,
    pool: PgPool,
}

/// What `status` reports.
#[derive(Debug, Clone)]
pub struct Status {
    pub pan: KeyInfo,
    pub fingerprint: KeyInfo,
    /// Stored card ciphertexts per `pan` key version (`None`: unreadable version).
    pub ciphertexts: VersionCounts,
}

/// What `rewrap` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// The `pan` key version the ciphertexts were re-wrapped onto.
    pub version: u64,
    pub rewrapped: usize,
    /// Rows whose ciphertext changed meanwhile, left alone.
    pub skipped: usize,
}

impl CardKeys {
    /// `pool` must be a pool of the accounts schema.
    pub fn new(transit: Transit, pool: PgPool) -> Self {
        Self { transit, pool }
    }

    pub async fn status(&self) -> anyhow::Result<Status> {
        Ok(Status {
            pan: self.transit.key_info(PAN_KEY).await?,
            fingerprint: self.transit.key_info(FINGERPRINT_KEY).await?,
            ciphertexts: self.db(store::ciphertext_versions).await?,
        })
    }

    /// Adds a version to the `pan` key; new cards are encrypted with it from now on.
    /// Returns the key's versions after the rotation.
    pub async fn rotate(&self) -> anyhow::Result<KeyInfo> {
        self.transit.rotate(PAN_KEY).await?;
        self.transit.key_info(PAN_KEY).await
    }

    /// Re-wraps every stored card ciphertext not on the newest `pan` key version, `batch`
    /// rows per transaction. A row is updated only if its ciphertext is still the one
    /// re-wrapped, so a concurrent change is never overwritten.
    pub async fn rewrap(&self, batch: i64) -> anyhow::Result<Rewrapped> {
        anyhow::ensure!(batch > 0, "the batch size must be positive");
        let latest = self.transit.key_info(PAN_KEY).await?.latest_version;
        let mut done = Rewrapped {
            version: latest,
            rewrapped: 0,
            skipped: 0,
        };
        let mut after = None;
        loop {
            let rows = self
                .db(move |c| store::not_on_version(c, latest, after, batch))
                .await?;
            let Some((last, _)) = rows.last() else {
                return Ok(done);
            };
            after = Some(*last);
            let mut changes = Vec::with_capacity(rows.len());
            for (id, old) in rows {
                let new = self
                    .transit
                    .rewrap(PAN_KEY, &old)
                    .await
                    .with_context(|| format!("re-wrapping the number of card {id}"))?;
                let version = card_keys::ciphertext_version(&new);
                anyhow::ensure!(
                    version.is_some_and(|v| v >= latest),
                    "Vault re-wrapped card {id} onto {version:?}, not onto v{latest} or newer"
                );
                changes.push((id, old, new));
            }
            let n = changes.len();
            let changed = self
                .db(move |c| store::replace_ciphertexts(c, &changes))
                .await?;
            done.rewrapped += changed;
            done.skipped += n - changed;
        }
    }

    /// Retires every `pan` key version older than the newest (sets min_decryption_version
    /// to it), after checking that no stored ciphertext still needs one. Returns the
    /// key's versions afterwards.
    pub async fn retire(&self) -> anyhow::Result<KeyInfo> {
        let info = self.transit.key_info(PAN_KEY).await?;
        let counts = self.db(store::ciphertext_versions).await?;
        card_keys::check_retire(info.latest_version, &counts)?;
        if info.min_decryption_version < info.latest_version {
            self.transit
                .set_min_decryption_version(PAN_KEY, info.latest_version)
                .await?;
        }
        self.transit.key_info(PAN_KEY).await
    }

    async fn db<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut PgConnection) -> diesel::QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().context("connecting to the accounts database")?;
            f(&mut conn).context("reading or updating the cards table")
        })
        .await
        .context("the database task failed")?
    }
}
