//! A Vault (OpenBao) client for the transit engine, through vaultrs.
//!
//! Card numbers are encrypted by the transit engine; this process never holds the key.
//! Besides encrypting, decrypting and fingerprinting, `Transit` offers what key
//! rotation needs (ADR 0014): read a key's versions, rotate it, re-wrap a ciphertext
//! under the newest version without ever seeing the plaintext, and retire old versions.

use crate::config::VaultSettings;
use crate::secrets::Secret;
use anyhow::Context;
use base64::Engine;
use vaultrs::api::transit::responses::ReadKeyData;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

pub struct Transit {
    client: VaultClient,
    mount: String,
}

impl Transit {
    pub fn new(settings: &VaultSettings) -> anyhow::Result<Self> {
        Ok(Self {
            client: client(settings)?,
            mount: settings.transit_mount.clone(),
        })
    }

    /// Mounts the transit engine when missing and creates `keys` (idempotent).
    pub async fn ensure_keys(&self, keys: &[&str]) -> anyhow::Result<()> {
        let mounts = vaultrs::sys::mount::list(&self.client)
            .await
            .context("listing Vault mounts")?;
        if !mounts.contains_key(&format!("{}/", self.mount)) {
            if let Err(e) =
                vaultrs::sys::mount::enable(&self.client, &self.mount, "transit", None).await
            {
                // Another process may have mounted it meanwhile.
                if !e.to_string().contains("already in use") {
                    return Err(e).context("mounting the transit engine");
                }
            }
        }
        for key in keys {
            vaultrs::transit::key::create(&self.client, &self.mount, key, None)
                .await
                .with_context(|| format!("creating transit key {key}"))?;
        }
        Ok(())
    }

    /// Encrypts `plaintext` with the newest version of `key`; returns `vault:vN:…`.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> anyhow::Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
        let resp = vaultrs::transit::data::encrypt(&self.client, &self.mount, key, &b64, None)
            .await
            .context("transit encrypt")?;
        Ok(resp.ciphertext)
    }

    /// Decrypts a `vault:vN:…` ciphertext of `key`. The plaintext comes back as a
    /// `Secret`, so it cannot be printed by accident.
    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> anyhow::Result<Secret<Vec<u8>>> {
        let resp =
            vaultrs::transit::data::decrypt(&self.client, &self.mount, key, ciphertext, None)
                .await
                .context("transit decrypt")?;
        base64::engine::general_purpose::STANDARD
            .decode(resp.plaintext)
            .map(Secret::new)
            .context("decoding plaintext")
    }

    /// Keyed fingerprint (HMAC) with version `key_version` of `key`. A fingerprint used as
    /// a blind index must pin one version, so it stays the same when the key rotates.
    pub async fn fingerprint(
        &self,
        key: &str,
        key_version: u64,
        input: &[u8],
    ) -> anyhow::Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(input);
        let mut opts = vaultrs::api::transit::requests::GenerateHmacRequest::builder();
        opts.key_version(key_version);
        let resp =
            vaultrs::transit::generate::hmac(&self.client, &self.mount, key, &b64, Some(&mut opts))
                .await
                .context("transit hmac")?;
        Ok(resp.hmac)
    }

    /// The versions of `key`: its newest, and the oldest it still decrypts.
    pub async fn key_info(&self, key: &str) -> anyhow::Result<KeyInfo> {
        let resp = vaultrs::transit::key::read(&self.client, &self.mount, key)
            .await
            .with_context(|| format!("reading transit key {key}"))?;
        // The key map lists only the versions still usable (min_decryption_version and up);
        // the newest is the highest of them.
        let latest_version = match &resp.keys {
            ReadKeyData::Symmetric(keys) => keys.keys().filter_map(|k| k.parse().ok()).max(),
            ReadKeyData::Asymmetric(keys) => keys.keys().filter_map(|k| k.parse().ok()).max(),
        }
        .with_context(|| format!("transit key {key} lists no versions"))?;
        Ok(KeyInfo {
            latest_version,
            min_decryption_version: resp.min_decryption_version,
        })
    }

    /// Adds a new version to `key`; new encryptions use it from now on.
    pub async fn rotate(&self, key: &str) -> anyhow::Result<()> {
        vaultrs::transit::key::rotate(&self.client, &self.mount, key)
            .await
            .with_context(|| format!("rotating transit key {key}"))
    }

    /// Re-encrypts `ciphertext` under the newest version of `key` inside Vault: the
    /// plaintext never leaves it. Returns the new `vault:vN:…`.
    pub async fn rewrap(&self, key: &str, ciphertext: &str) -> anyhow::Result<String> {
        let resp = vaultrs::transit::data::rewrap(&self.client, &self.mount, key, ciphertext, None)
            .await
            .context("transit rewrap")?;
        Ok(resp.ciphertext)
    }

    /// Sets the oldest version of `key` that may still decrypt; older versions are retired
    /// (their ciphertexts can no longer be decrypted or re-wrapped).
    pub async fn set_min_decryption_version(&self, key: &str, version: u64) -> anyhow::Result<()> {
        let mut opts = vaultrs::api::transit::requests::UpdateKeyConfigurationRequest::builder();
        opts.min_decryption_version(version);
        vaultrs::transit::key::update(&self.client, &self.mount, key, Some(&mut opts))
            .await
            .with_context(|| format!("setting min_decryption_version of transit key {key}"))
    }

    /// Whether Vault answers and `key` exists in the transit mount (readiness).
    pub async fn ready(&self, key: &str) -> bool {
        vaultrs::transit::key::read(&self.client, &self.mount, key)
            .await
            .is_ok()
    }
}

/// A transit key's versions, as Vault reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The version new encryptions and re-wraps use.
    pub latest_version: u64,
    /// The oldest version that still decrypts; older ones are retired.
    pub min_decryption_version: u64,
}

/// Whether Vault answered and refused the request as invalid (status 400: a malformed
/// ciphertext, or one whose key version is retired), as opposed to not answering or
/// failing on its side. The first is a problem with the data, the second an outage.
pub fn refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ClientError>(),
            Some(ClientError::APIError { code: 400, .. })
        )
    })
}

/// A client of the Vault at `settings`, answering within 5 s.
pub fn client(settings: &VaultSettings) -> anyhow::Result<VaultClient> {
    let url = url_ok(&settings.addr)?;
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(url)
            .token(settings.token.expose().clone())
            .timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .context("building the Vault client settings")?,
    )
    .context("building the Vault client")
}

fn url_ok(addr: &str) -> anyhow::Result<&str> {
    // vaultrs panics on an invalid URL; check first so configuration errors are errors.
    if !(addr.starts_with("http://") || addr.starts_with("https://")) {
        anyhow::bail!("VAULT ADDR must be an http(s) URL");
    }
    Ok(addr)
}
