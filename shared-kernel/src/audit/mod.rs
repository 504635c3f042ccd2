//! The audit log every context keeps: one record per state-changing request (and so per
//! card reveal), saying who (subject, program), what (action, resource), when, the
//! outcome, the request id and the source address.
//!
//! Records form a hash chain: record `n` carries the hash of record `n - 1`, and its own
//! hash covers its position, its content and that previous hash. Altering a record breaks
//! its hash; deleting or inserting one breaks the link or the numbering after it.
//! [`verify`] names the first record where the chain breaks (`cargo xtask audit verify`).

pub mod http;
pub mod store;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a request did, before it is placed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub subject: String,
    pub program: Option<String>,
    /// The method and the route's pattern: `POST /v1/cards/{id}/reveal`.
    pub action: String,
    /// The path with its ids: `/v1/cards/0190…/reveal`.
    pub resource: String,
    pub status: u16,
    pub request_id: String,
    pub source: String,
}

impl Entry {
    /// `succeeded` (2xx/3xx), `refused` (4xx) or `failed` (5xx).
    pub fn outcome(&self) -> &'static str {
        match self.status {
            400..=499 => "refused",
            500.. => "failed",
            _ => "succeeded",
        }
    }
}

/// A record of the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub seq: i64,
    #[serde(serialize_with = "micros")]
    pub at: DateTime<Utc>,
    pub subject: String,
    pub program: Option<String>,
    pub action: String,
    pub resource: String,
    pub outcome: String,
    pub status: i32,
    pub request_id: String,
    pub source: String,
    pub prev_hash: String,
    pub hash: String,
}

fn micros<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Record {
    /// Places `entry` after the record at `seq - 1` whose hash is `prev_hash`. The time
    /// is kept to the microsecond, as PostgreSQL stores it.
    pub fn chain(entry: Entry, seq: i64, prev_hash: &str) -> Self {
        let at = DateTime::from_timestamp_micros(entry.at.timestamp_micros()).unwrap_or(entry.at);
        let mut record = Record {
            seq,
            at,
            outcome: entry.outcome().to_owned(),
            status: i32::from(entry.status),
            subject: entry.subject,
            program: entry.program,
            action: entry.action,
            resource: entry.resource,
            request_id: entry.request_id,
            source: entry.source,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        record.hash = record.digest();
        record
    }

    /// SHA-256 over the record's position, content and previous hash, in hex.
    pub fn digest(&self) -> String {
        let canonical = serde_json::json!([
            self.seq,
            self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.subject,
            self.program,
            self.action,
            self.resource,
            self.outcome,
            self.status,
            self.request_id,
            self.source,
            self.prev_hash,
        ]);
        Sha256::digest(canonical.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error("record {seq} was altered: its hash does not match its content")]
    Altered { seq: i64 },
    #[error("record {seq} does not follow record {previous}: records were deleted or inserted between them")]
    Gap { seq: i64, previous: i64 },
    #[error("record {seq} does not carry the hash of the record before it: a record was replaced, deleted or inserted")]
    Unlinked { seq: i64 },
}

/// Checks a whole chain, given in `seq` order; returns the number of records and the
/// head hash.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a Record>) -> Result<(u64, String), Break> {
    let (mut count, mut previous_seq, mut previous_hash) = (0u64, 0i64, GENESIS.to_owned());
    for r in records {
        if r.digest() != r.hash {
            return Err(Break::Altered { seq: r.seq });
        }
        if r.seq != previous_seq + 1 {
            return Err(Break::Gap {
                seq: r.seq,
                previous: previous_seq,
            });
        }
        if r.prev_hash != previous_hash {
            return Err(Break::Unlinked { seq: r.seq });
        }
        count += 1;
        previous_seq = r.seq;
        previous_hash.clone_from(&r.hash);
    }
    Ok((count, previous_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS.to_owned(), |r| r.hash.clone());
            out.push(Record::chain(
                Entry {
                    at: Utc::now(),
                    subject: format!("user-{seq}"),
                    program: None,
                    action: "POST /v1/accounts".to_owned(),
                    resource: "/v1/accounts".to_owned(),
                    status: 201,
                    request_id: format!("req-{seq}"),
                    source: "127.0.0.1".to_owned(),
                },
                seq,
                &prev,
            ));
        }
        out
    }

    #[test]
    fn a_clean_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify(&c), Ok((5, c[4].hash.clone())));
        assert_eq!(verify(&[]), Ok((0, GENESIS.to_owned())));
    }

    #[test]
    fn altering_deleting_or_inserting_is_named() {
        let mut altered = chain(5);
        altered[2].subject = "mallory".to_owned();
        assert_eq!(verify(&altered), Err(Break::Altered { seq: 3 }));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(
            verify(&deleted),
            Err(Break::Gap {
                seq: 3,
                previous: 1
            })
        );

        // A forged record with a consistent hash, slotted in by renumbering the rest.
        let mut inserted = chain(5);
        let forged = Record::chain(
            Entry {
                at: Utc::now(),
                subject: "mallory".to_owned(),
                program: None,
                action: "POST /v1/accounts".to_owned(),
                resource: "/v1/accounts".to_owned(),
                status: 201,
                request_id: "forged".to_owned(),
                source: "10.0.0.1".to_owned(),
            },
            3,
            &inserted[1].hash,
        );
        inserted.insert(2, forged);
        for (i, r) in inserted.iter_mut().enumerate().skip(3) {
            r.seq = i as i64 + 1;
        }
        assert_eq!(verify(&inserted), Err(Break::Altered { seq: 4 }));
    }

    #[test]
    fn outcome_follows_the_status() {
        let entry = |status| Entry {
            at: Utc::now(),
            subject: String::new(),
            program: None,
            action: String::new(),
            resource: String::new(),
            status,
            request_id: String::new(),
            source: String::new(),
        };
        assert_eq!(entry(201).outcome(), "succeeded");
        assert_eq!(entry(404).outcome(), "refused");
        assert_eq!(entry(503).outcome(), "failed");
    }
}
