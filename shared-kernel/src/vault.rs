//! A Vault (OpenBao) client for the transit engine, through vaultrs.
//!
//! Card numbers are encrypted by the transit engine; this process never holds the key.

use crate::config::VaultSettings;
use anyhow::Context;
use base64::Engine;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub struct Transit {
    client: VaultClient,
    mount: String,
}

impl Transit {
    pub fn new(settings: &VaultSettings) -> anyhow::Result<Self> {
        let url = url_ok(&settings.addr)?;
        let client = VaultClient::new(
            VaultClientSettingsBuilder::default()
                .address(url)
                .token(settings.token.expose().clone())
                .timeout(Some(std::time::Duration::from_secs(5)))
                .build()
                .context("building the Vault client settings")?,
        )
        .context("building the Vault client")?;
        Ok(Self {
            client,
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

    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> anyhow::Result<Vec<u8>> {
        let resp =
            vaultrs::transit::data::decrypt(&self.client, &self.mount, key, ciphertext, None)
                .await
                .context("transit decrypt")?;
        base64::engine::general_purpose::STANDARD
            .decode(resp.plaintext)
            .context("decoding plaintext")
    }

    /// Keyed fingerprint, pinned to key version 1 so it stays stable across rotations.
    pub async fn fingerprint(&self, key: &str, input: &[u8]) -> anyhow::Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(input);
        let mut opts = vaultrs::api::transit::requests::GenerateHmacRequest::builder();
        opts.key_version(1u64);
        let resp =
            vaultrs::transit::generate::hmac(&self.client, &self.mount, key, &b64, Some(&mut opts))
                .await
                .context("transit hmac")?;
        Ok(resp.hmac)
    }

    /// Whether Vault answers and `key` exists in the transit mount (readiness).
    pub async fn ready(&self, key: &str) -> bool {
        vaultrs::transit::key::read(&self.client, &self.mount, key)
            .await
            .is_ok()
    }
}

fn url_ok(addr: &str) -> anyhow::Result<&str> {
    // vaultrs panics on an invalid URL; check first so configuration errors are errors.
    if !(addr.starts_with("http://") || addr.starts_with("https://")) {
        anyhow::bail!("VAULT ADDR must be an http(s) URL");
    }
    Ok(addr)
}
