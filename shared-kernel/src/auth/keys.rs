//! Token keys: the verification keys the services hold and the signing keys only an
//! issuer holds, each named by a key id (`kid`).
//!
//! Ed25519 keys travel as standard PEM: the public key as SubjectPublicKeyInfo
//! (`PUBLIC KEY`), the private key as PKCS#8 (`PRIVATE KEY`), so `openssl pkey` reads
//! them. The development key is an HS256 secret with the key id [`DEV_KID`].

use crate::secrets::Secret;
use anyhow::{bail, Context};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::fmt;

/// The key id of the development HS256 key from `AUTH__JWT_SECRET`.
pub const DEV_KID: &str = "dev";

/// The `alg` of keys kept in Vault.
pub const EDDSA: &str = "EdDSA";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key that checks the signatures of the tokens of one key id.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: String,
    pub alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl VerificationKey {
    /// The development key: HS256 with a shared secret.
    pub fn hs256(kid: &str, secret: &Secret<String>) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
        }
    }

    /// An Ed25519 public key in PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn ed25519_from_pem(kid: &str, public_key_pem: &str) -> anyhow::Result<Self> {
        let raw = ed25519_public_key_from_pem(public_key_pem)?;
        Ok(Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            key: DecodingKey::from_ed_der(&raw),
        })
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerificationKey({}, {:?})", self.kid, self.alg)
    }
}

/// A key that signs tokens (issuers only: `cargo xtask token`, the tests).
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub(crate) key: EncodingKey,
}

impl SigningKey {
    pub fn hs256(kid: &str, secret: &Secret<String>) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::HS256,
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
        }
    }

    /// An Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn ed25519_from_pem(kid: &str, private_key_pem: &Secret<String>) -> anyhow::Result<Self> {
        let der = pem_decode("PRIVATE KEY", private_key_pem.expose())?;
        // Parse it now, so a broken key is an error here rather than at the first token.
        Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 key"))?;
        Ok(Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(&der),
        })
    }

    /// The verification key of this signing key (HS256: the same secret).
    pub fn verification_key(&self) -> anyhow::Result<VerificationKey> {
        match self.alg {
            Algorithm::HS256 => Ok(VerificationKey {
                kid: self.kid.clone(),
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(self.key.inner()),
            }),
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(self.key.inner())
                    .map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 key"))?;
                Ok(VerificationKey {
                    kid: self.kid.clone(),
                    alg: Algorithm::EdDSA,
                    key: DecodingKey::from_ed_der(pair.public_key().as_ref()),
                })
            }
            other => bail!("unsupported signing algorithm {other:?}"),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, {:?}, [REDACTED])", self.kid, self.alg)
    }
}

/// A freshly generated Ed25519 key pair, as PEM.
pub struct Ed25519Pem {
    pub kid: String,
    pub public_key_pem: String,
    pub private_key_pem: Secret<String>,
}

impl Ed25519Pem {
    /// A new key pair with a new key id (`<UTC date and time>-<random>`).
    pub fn generate() -> anyhow::Result<Self> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("reading the generated Ed25519 key failed"))?;
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        Ok(Self {
            kid: new_kid(),
            public_key_pem: pem_encode("PUBLIC KEY", &spki),
            private_key_pem: Secret::new(pem_encode("PRIVATE KEY", pkcs8.as_ref())),
        })
    }

    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        SigningKey::ed25519_from_pem(&self.kid, &self.private_key_pem)
    }

    pub fn verification_key(&self) -> anyhow::Result<VerificationKey> {
        VerificationKey::ed25519_from_pem(&self.kid, &self.public_key_pem)
    }
}

/// A key id that sorts by creation time and does not repeat: `20261127T084400Z-1a2b3c4d`.
pub fn new_kid() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &random[..8]
    )
}

/// The 32 raw bytes of an Ed25519 public key in SPKI PEM.
pub fn ed25519_public_key_from_pem(pem: &str) -> anyhow::Result<Vec<u8>> {
    let der = pem_decode("PUBLIC KEY", pem)?;
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(raw) if raw.len() == 32 => Ok(raw.to_vec()),
        _ => bail!("not an Ed25519 public key"),
    }
}

/// The public key (SPKI PEM) of an Ed25519 private key (PKCS#8 PEM).
pub fn ed25519_public_pem_of(private_key_pem: &Secret<String>) -> anyhow::Result<String> {
    let der = pem_decode("PRIVATE KEY", private_key_pem.expose())?;
    let pair = Ed25519KeyPair::from_pkcs8(&der)
        .map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 key"))?;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok(pem_encode("PUBLIC KEY", &spki))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(label: &str, pem: &str) -> anyhow::Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .trim()
        .strip_prefix(&begin)
        .and_then(|rest| rest.strip_suffix(&end))
        .with_context(|| format!("not a PEM {label}"))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .with_context(|| format!("invalid base64 in the PEM {label}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pem_round_trips_and_matches() {
        let pair = Ed25519Pem::generate().unwrap();
        assert!(pair
            .public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pair
            .private_key_pem
            .expose()
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(
            ed25519_public_pem_of(&pair.private_key_pem).unwrap(),
            pair.public_key_pem
        );
        assert_eq!(
            ed25519_public_key_from_pem(&pair.public_key_pem)
                .unwrap()
                .len(),
            32
        );
        assert!(pair.signing_key().is_ok());
        assert!(!format!("{:?}", pair.signing_key().unwrap()).contains("PRIVATE"));
        assert!(VerificationKey::ed25519_from_pem("k", "not a pem").is_err());
        assert!(VerificationKey::ed25519_from_pem("k", pair.private_key_pem.expose()).is_err());
    }

    #[test]
    fn reads_an_openssl_made_key() {
        // A throwaway test key from `openssl genpkey -algorithm ED25519` (PKCS#8 v1),
        // and its `openssl pkey -pubout`.
        let private = Secret::new(
            "-----BEGIN PRIVATE KEY-----\n\
             MC4CAQAwBQYDK2VwBCIEICyHP9cthttZj8ilaoq6QXR3jI/A0iUIYunmsBRcUzE4\n\
             -----END PRIVATE KEY-----\n"
                .to_owned(),
        );
        let public = "-----BEGIN PUBLIC KEY-----\n\
                      MCowBQYDK2VwAyEAWj5UJvcjb53sNOxpO8zcHmPM3G6174BnDtA38bQo+Es=\n\
                      -----END PUBLIC KEY-----\n";
        let key = SigningKey::ed25519_from_pem("k", &private).unwrap();
        assert_eq!(key.alg, Algorithm::EdDSA);
        assert_eq!(ed25519_public_pem_of(&private).unwrap(), public);
        assert!(VerificationKey::ed25519_from_pem("k", public).is_ok());
    }

    #[test]
    fn key_ids_differ() {
        assert_ne!(new_kid(), new_kid());
    }
}
