//! `cargo xtask keys status|rotate|rewrap|retire`: the card-number key's rotation
//! (ADR 0014), through `accounts::card_keys`. Only the transit key `pan` is rotated;
//! the fingerprint key `pan-fingerprint` stays on version 1 for good.
//!
//! Reads `ACCOUNTS__DATABASE__URL` (or `FLEET__DATABASE__URL`, else the development
//! database) and the Vault of `dev::vault_settings`.

use accounts::card_keys::{CardKeys, FINGERPRINT_KEY, FINGERPRINT_KEY_VERSION, PAN_KEY};
use shared_kernel::config::Env;
use shared_kernel::vault::{KeyInfo, Transit};

fn card_keys() -> anyhow::Result<CardKeys> {
    let url = Env::new("accounts")
        .get("DATABASE", "URL")
        .unwrap_or_else(crate::dev::dev_database_url);
    let pool = shared_kernel::db::command_pool(&url, accounts::SCHEMA, 2)?;
    let transit = Transit::new(&crate::dev::vault_settings()?)?;
    Ok(CardKeys::new(transit, pool))
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn describe(key: &str, info: &KeyInfo) -> String {
    format!(
        "{key}: latest version {}, min decryption version {}",
        info.latest_version, info.min_decryption_version
    )
}

/// The key versions and how many stored card ciphertexts are on each.
pub fn status() -> anyhow::Result<()> {
    let keys = card_keys()?;
    let status = block_on(keys.status())?;
    println!("{}", describe(PAN_KEY, &status.pan));
    if status.ciphertexts.is_empty() {
        println!("  no stored card ciphertexts");
    }
    for (version, count) in &status.ciphertexts {
        match version {
            Some(v) => println!("  v{v}: {count} card ciphertext(s)"),
            None => println!("  unknown version: {count} card ciphertext(s)"),
        }
    }
    println!(
        "{} (fingerprints use version {FINGERPRINT_KEY_VERSION}; never rotated)",
        describe(FINGERPRINT_KEY, &status.fingerprint)
    );
    if status.fingerprint.min_decryption_version > FINGERPRINT_KEY_VERSION {
        anyhow::bail!(
            "{FINGERPRINT_KEY} version {FINGERPRINT_KEY_VERSION} is retired: card issuance cannot fingerprint numbers"
        );
    }
    Ok(())
}

/// A new version of the `pan` key; new cards are encrypted with it.
pub fn rotate() -> anyhow::Result<()> {
    let info = block_on(card_keys()?.rotate())?;
    println!("rotated: {}", describe(PAN_KEY, &info));
    println!("next: `cargo xtask keys rewrap`, then `cargo xtask keys retire`");
    Ok(())
}

/// Every stored card ciphertext re-wrapped onto the newest `pan` version.
pub fn rewrap(batch: i64) -> anyhow::Result<()> {
    let done = block_on(card_keys()?.rewrap(batch))?;
    println!(
        "re-wrapped {} card ciphertext(s) onto {PAN_KEY} v{}",
        done.rewrapped, done.version
    );
    if done.skipped > 0 {
        println!(
            "{} changed meanwhile and were left alone; run rewrap again",
            done.skipped
        );
    }
    Ok(())
}

/// Older `pan` versions retired, once no stored ciphertext needs them.
pub fn retire() -> anyhow::Result<()> {
    let info = block_on(card_keys()?.retire())?;
    println!("retired older versions: {}", describe(PAN_KEY, &info));
    Ok(())
}
