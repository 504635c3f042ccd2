//! Token keys in a Vault (OpenBao) KV v2 secret, rotated by writing a new version.
//!
//! Each version of the secret at `<mount>/<path>` holds one public key:
//! `{"kid", "alg": "EdDSA", "public_key_pem"}`. The services read only that secret and
//! accept the keys of its newest `accepted` versions that are neither deleted nor
//! destroyed; retiring a key is deleting (or destroying) its version. The private key of
//! each kid is a secret of its own at `<mount>/<path>-private/<kid>`, which only an
//! issuer's Vault policy may read, so the services never receive a signing key.

use super::keys::{self, Ed25519Pem, SigningKey, VerificationKey};
use super::KeySource;
use crate::config::VaultSettings;
use crate::secrets::Secret;
use anyhow::{bail, Context};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use vaultrs::api::kv2::requests::SetSecretRequestOptions;
use vaultrs::api::kv2::responses::SecretMetadata;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

/// One version of the public secret.
#[derive(Debug, Serialize, Deserialize)]
struct PublicEntry {
    kid: String,
    alg: String,
    public_key_pem: String,
}

/// The private key of one kid (no `Debug`: it must never be printed).
#[derive(Serialize, Deserialize)]
struct PrivateEntry {
    kid: String,
    alg: String,
    private_key_pem: String,
}

/// A key written by [`VaultKeyStore::rotate`].
#[derive(Debug, Clone, Serialize)]
pub struct RotatedKey {
    pub kid: String,
    pub version: u64,
}

pub struct VaultKeyStore {
    client: VaultClient,
    mount: String,
    path: String,
    accepted: usize,
}

impl VaultKeyStore {
    /// The store at `<mount>/<path>` whose newest `accepted` live versions are accepted.
    pub fn new(
        vault: &VaultSettings,
        mount: &str,
        path: &str,
        accepted: usize,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: crate::vault::client(vault)?,
            mount: mount.to_owned(),
            path: path.trim_matches('/').to_owned(),
            accepted: accepted.max(1),
        })
    }

    fn private_path(&self, kid: &str) -> String {
        format!("{}-private/{kid}", self.path)
    }

    /// The versions of the public secret; empty when it does not exist yet.
    async fn versions(&self) -> anyhow::Result<(u64, HashMap<String, SecretMetadata>)> {
        match vaultrs::kv2::read_metadata(&self.client, &self.mount, &self.path).await {
            Ok(m) => Ok((m.current_version, m.versions)),
            Err(ClientError::APIError { code: 404, .. }) => Ok((0, HashMap::new())),
            Err(e) => Err(e).context("reading the token key versions from Vault"),
        }
    }

    async fn entry(&self, version: u64) -> anyhow::Result<PublicEntry> {
        vaultrs::kv2::read_version(&self.client, &self.mount, &self.path, version)
            .await
            .with_context(|| format!("reading version {version} of the token keys from Vault"))
    }

    /// The verification keys of the newest accepted live versions, newest first. A
    /// version that is not a valid EdDSA key is skipped with a warning.
    pub async fn verification_keys(&self) -> anyhow::Result<Vec<VerificationKey>> {
        let (_, versions) = self.versions().await?;
        let mut keys = Vec::new();
        for version in live_versions(&versions, chrono::Utc::now(), self.accepted) {
            let entry = self.entry(version).await?;
            if entry.alg != keys::EDDSA {
                tracing::warn!(
                    version,
                    kid = %entry.kid,
                    alg = %entry.alg,
                    "ignoring a token key that is not EdDSA"
                );
                continue;
            }
            match VerificationKey::ed25519_from_pem(&entry.kid, &entry.public_key_pem) {
                Ok(k) => keys.push(k),
                Err(e) => {
                    tracing::warn!(version, kid = %entry.kid, error = %e, "ignoring an unreadable token key")
                }
            }
        }
        Ok(keys)
    }

    /// The signing key of the newest live version (reads its private key; issuers only).
    pub async fn newest_signing_key(&self) -> anyhow::Result<SigningKey> {
        let (_, versions) = self.versions().await?;
        let Some(version) = live_versions(&versions, chrono::Utc::now(), 1)
            .first()
            .copied()
        else {
            bail!(
                "no token signing key in Vault at {}/{}; run `cargo xtask auth rotate-key`",
                self.mount,
                self.path
            );
        };
        let public = self.entry(version).await?;
        let private: PrivateEntry =
            vaultrs::kv2::read(&self.client, &self.mount, &self.private_path(&public.kid))
                .await
                .with_context(|| format!("reading the private key of kid {}", public.kid))?;
        let pem = Secret::new(private.private_key_pem);
        if private.kid != public.kid || keys::ed25519_public_pem_of(&pem)? != public.public_key_pem
        {
            bail!(
                "the private key of kid {} does not match its public key",
                public.kid
            );
        }
        SigningKey::ed25519_from_pem(&public.kid, &pem)
    }

    /// Makes a new Ed25519 key and publishes it as the newest version: the private key
    /// first (so every published kid can sign), then the public key, with check-and-set
    /// on the version read, so two concurrent rotations cannot both win.
    pub async fn rotate(&self) -> anyhow::Result<RotatedKey> {
        let (current, _) = self.versions().await?;
        let pair = Ed25519Pem::generate()?;
        let private = PrivateEntry {
            kid: pair.kid.clone(),
            alg: keys::EDDSA.to_owned(),
            private_key_pem: pair.private_key_pem.expose().clone(),
        };
        vaultrs::kv2::set_with_options(
            &self.client,
            &self.mount,
            &self.private_path(&pair.kid),
            &private,
            SetSecretRequestOptions { cas: 0 },
        )
        .await
        .context("writing the new private key to Vault")?;
        let public = PublicEntry {
            kid: pair.kid.clone(),
            alg: keys::EDDSA.to_owned(),
            public_key_pem: pair.public_key_pem.clone(),
        };
        let written = vaultrs::kv2::set_with_options(
            &self.client,
            &self.mount,
            &self.path,
            &public,
            SetSecretRequestOptions {
                cas: u32::try_from(current).context("version number out of range")?,
            },
        )
        .await
        .context("writing the new public key to Vault (another rotation at the same time?)")?;
        Ok(RotatedKey {
            kid: pair.kid,
            version: written.version,
        })
    }

    /// Retires the key of `version`: deletes that version (or destroys it for good) so
    /// no service accepts it after its next refresh, and removes its private key.
    pub async fn retire(&self, version: u64, destroy: bool) -> anyhow::Result<String> {
        let kid = self.entry(version).await?.kid;
        if destroy {
            vaultrs::kv2::destroy_versions(&self.client, &self.mount, &self.path, vec![version])
                .await
        } else {
            vaultrs::kv2::delete_versions(&self.client, &self.mount, &self.path, vec![version])
                .await
        }
        .with_context(|| format!("retiring version {version} of the token keys"))?;
        vaultrs::kv2::delete_metadata(&self.client, &self.mount, &self.private_path(&kid))
            .await
            .with_context(|| format!("deleting the private key of kid {kid}"))?;
        Ok(kid)
    }
}

impl KeySource for VaultKeyStore {
    fn load(&self) -> BoxFuture<'_, anyhow::Result<Vec<VerificationKey>>> {
        Box::pin(self.verification_keys())
    }
}

/// The newest `n` versions that are neither destroyed nor deleted (a deletion time in
/// the future, from `delete_version_after`, is not a deletion yet), newest first.
pub fn live_versions(
    versions: &HashMap<String, SecretMetadata>,
    now: chrono::DateTime<chrono::Utc>,
    n: usize,
) -> Vec<u64> {
    let mut live: Vec<u64> = versions
        .iter()
        .filter(|(_, m)| !m.destroyed && !deleted(&m.deletion_time, now))
        .filter_map(|(v, _)| v.parse().ok())
        .collect();
    live.sort_unstable_by(|a, b| b.cmp(a));
    live.truncate(n);
    live
}

fn deleted(deletion_time: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    if deletion_time.is_empty() {
        return false;
    }
    // An unreadable time counts as deleted: never accept a key we cannot judge.
    chrono::DateTime::parse_from_rfc3339(deletion_time).map_or(true, |t| t <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(deletion_time: &str, destroyed: bool) -> SecretMetadata {
        SecretMetadata {
            created_time: "2026-01-01T00:00:00Z".to_owned(),
            deletion_time: deletion_time.to_owned(),
            destroyed,
        }
    }

    #[test]
    fn accepts_the_newest_live_versions() {
        let now = chrono::Utc::now();
        let later = (now + chrono::Duration::hours(1)).to_rfc3339();
        let earlier = (now - chrono::Duration::hours(1)).to_rfc3339();
        let versions: HashMap<String, SecretMetadata> = [
            ("1", meta("", false)),
            ("2", meta("", false)),
            ("3", meta(&earlier, false)),
            ("4", meta("", true)),
            ("5", meta(&later, false)),
            ("6", meta("", false)),
            ("x", meta("", false)),
        ]
        .into_iter()
        .map(|(k, m)| (k.to_owned(), m))
        .collect();
        assert_eq!(live_versions(&versions, now, 2), vec![6, 5]);
        assert_eq!(live_versions(&versions, now, 10), vec![6, 5, 2, 1]);
        assert_eq!(live_versions(&versions, now, 1), vec![6]);
        assert!(live_versions(&HashMap::new(), now, 2).is_empty());
        let garbled: HashMap<String, SecretMetadata> =
            [("1".to_owned(), meta("yesterday", false))].into();
        assert!(live_versions(&garbled, now, 2).is_empty());
    }
}
