//! Rules of card-number key rotation (ADR 0014): which key version a stored ciphertext
//! is on, and when old versions may be retired. Pure: Vault and the database are
//! reached by `crate::card_keys`.

use std::collections::BTreeMap;
use std::fmt;

/// The key version of a transit ciphertext `vault:v<N>:<base64>`, or None when it is not
/// in that form.
pub fn ciphertext_version(ciphertext: &str) -> Option<u64> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (digits, body) = rest.split_once(':')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || body.is_empty() {
        return None;
    }
    digits.parse().ok()
}

/// How many stored ciphertexts are on each key version; `None` counts those whose
/// version cannot be read.
pub type VersionCounts = BTreeMap<Option<u64>, i64>;

/// Why old key versions cannot be retired yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetireRefused {
    pub latest: u64,
    /// Ciphertexts on versions older than `latest` (or unreadable), by version.
    pub older: VersionCounts,
}

impl fmt::Display for RetireRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .older
            .iter()
            .map(|(v, n)| match v {
                Some(v) => format!("{n} on v{v}"),
                None => format!("{n} of unknown version"),
            })
            .collect();
        write!(
            f,
            "{} stored card ciphertext(s) are older than key version {} ({}); \
             run `cargo xtask keys rewrap` first",
            self.older.values().sum::<i64>(),
            self.latest,
            parts.join(", ")
        )
    }
}

impl std::error::Error for RetireRefused {}

/// Versions below `latest` may be retired only when no stored ciphertext needs them:
/// every ciphertext must be on `latest` (or newer, if a rotation happened meanwhile).
pub fn check_retire(latest: u64, counts: &VersionCounts) -> Result<(), RetireRefused> {
    let older: VersionCounts = counts
        .iter()
        .filter(|(v, n)| **n > 0 && v.is_none_or(|v| v < latest))
        .map(|(v, n)| (*v, *n))
        .collect();
    if older.is_empty() {
        Ok(())
    } else {
        Err(RetireRefused { latest, older })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_of_a_ciphertext() {
        assert_eq!(ciphertext_version("vault:v1:abc="), Some(1));
        assert_eq!(ciphertext_version("vault:v12:abc="), Some(12));
        assert_eq!(ciphertext_version("vault:v:abc="), None);
        assert_eq!(ciphertext_version("vault:vx:abc="), None);
        assert_eq!(ciphertext_version("vault:v2:"), None);
        assert_eq!(ciphertext_version("v2:abc"), None);
    }

    #[test]
    fn retires_only_when_nothing_older_is_stored() {
        let counts = |pairs: &[(Option<u64>, i64)]| pairs.iter().copied().collect();
        assert!(check_retire(2, &counts(&[(Some(2), 5)])).is_ok());
        assert!(check_retire(2, &counts(&[])).is_ok());
        assert!(check_retire(2, &counts(&[(Some(3), 1), (Some(2), 1)])).is_ok());
        let refused = check_retire(2, &counts(&[(Some(1), 3), (Some(2), 5)])).unwrap_err();
        assert_eq!(refused.older, counts(&[(Some(1), 3)]));
        assert!(refused.to_string().contains("3 on v1"), "{refused}");
        assert!(check_retire(2, &counts(&[(None, 1), (Some(2), 5)])).is_err());
    }
}
