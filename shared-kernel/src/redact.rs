//! Redaction of what must never leave a process in clear (ADR 0019): card numbers,
//! bearer tokens and JWTs, Vault tokens, the values of credential-like keys
//! (`Authorization:`, `password=`, `cvv=`, ...) and passwords in URLs.
//!
//! [`redact`] is a pure function over any text. The log writer, the span exporter, the
//! panic hook, problem responses and the audit record run what they emit through
//! [`apply`], which is [`redact`] unless a debug build was told to switch redaction off
//! (only so a test can prove the redaction is what keeps a leak out; [`switch_off`]).
//!
//! Card numbers: a run of 13 to 19 digits that passes the Luhn check, written in one
//! piece or in groups of 3 to 6 digits joined by one space, dash, `+` or `%20`
//! (`4000 0566 5566 5556`, `4000-0566-5566-5556`, `4000%200566%205566%205556`). It is
//! replaced by its first six and last four digits with `*` between
//! (`400005******5556`), the masked form the card API itself shows. Digit runs that
//! are not card numbers stay: too short or too long, failing Luhn, or part of a
//! hexadecimal token (trace and span ids, hashes, UUID groups).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a secret value is replaced with.
pub const REDACTED: &str = "[REDACTED]";
/// What a JWT is replaced with.
pub const REDACTED_JWT: &str = "[REDACTED-JWT]";

static OFF: AtomicBool = AtomicBool::new(false);

/// Turns redaction off for this process, in debug builds only (a test proving that
/// redaction is what keeps card numbers out of the logs). Returns whether it did: a
/// release build ignores it and keeps redacting.
pub fn switch_off() -> bool {
    if cfg!(debug_assertions) {
        OFF.store(true, Ordering::Relaxed);
        true
    } else {
        false
    }
}

/// Whether this process redacts what it emits (always, unless [`switch_off`]).
pub fn enabled() -> bool {
    !OFF.load(Ordering::Relaxed)
}

/// [`redact`], unless redaction was switched off in this (debug) process.
pub fn apply(text: &str) -> Cow<'_, str> {
    if enabled() {
        redact(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` with every secret it contains masked (see the module documentation).
/// Borrowed when there was nothing to mask.
pub fn redact(text: &str) -> Cow<'_, str> {
    let passes: [fn(&str) -> Option<String>; 6] = [
        keyed_values,
        bearer_tokens,
        jwts,
        vault_tokens,
        url_passwords,
        card_numbers,
    ];
    let mut current: Option<String> = None;
    for pass in passes {
        if let Some(next) = pass(current.as_deref().unwrap_or(text)) {
            current = Some(next);
        }
    }
    match current {
        Some(s) => Cow::Owned(s),
        None => Cow::Borrowed(text),
    }
}

/// A JSON document with every string redacted, the value of every credential-like key
/// replaced, and every number that is a card number replaced by its masked form (a
/// string). For JSON text whose redaction as plain text would no longer be JSON (a card
/// number written as a bare number).
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Number(n) => {
            let digits = n.to_string();
            if digits.bytes().all(|b| b.is_ascii_digit()) && is_card_number(&digits) {
                *value = Value::String(mask_digits(&digits));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_null() {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// Whether `text` contains a card number (as [`redact`] recognises them).
pub fn contains_card_number(text: &str) -> bool {
    !card_number_spans(text).is_empty()
}

/// Luhn check of a string of ASCII digits (false for anything else or nothing).
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// 13 to 19 digits passing Luhn.
fn is_card_number(digits: &str) -> bool {
    (13..=19).contains(&digits.len()) && luhn_valid(digits)
}

/// `400005******5556`: the first six and the last four digits.
pub fn mask_digits(digits: &str) -> String {
    let n = digits.len();
    if n <= 10 {
        return "*".repeat(n);
    }
    format!("{}{}{}", &digits[..6], "*".repeat(n - 10), &digits[n - 4..])
}

/// Replaces the (sorted, disjoint) ranges of `text`; None when there are none.
fn splice(text: &str, edits: Vec<(Range<usize>, String)>) -> Option<String> {
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, with) in edits {
        out.push_str(&text[at..range.start]);
        out.push_str(&with);
        at = range.end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Keys whose value is a credential wherever they appear: `Authorization: Bearer ..`,
/// `"password":"..."`, `?access_token=..`, `cvv=123`.
const SECRET_KEYS: &[&str] = &[
    "authorization",
    "api-key",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "jwt_secret",
    "password",
    "passwd",
    "secret",
    "token",
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "csc",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS
        .iter()
        .any(|k| key == *k || key.ends_with(&format!("-{k}")))
}

/// The value after a credential-like key followed by `:` or `=` (with quotes, spaces
/// and JSON escapes around them). An `Authorization` value runs to the end of the
/// quoted string or line (it has a scheme and a space); others end at a space too.
fn keyed_values(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut edits = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(key) = SECRET_KEYS
            .iter()
            .find(|k| lower.as_bytes()[i..].starts_with(k.as_bytes()))
        else {
            i += 1;
            continue;
        };
        let end_of_key = i + key.len();
        let bounded_before = i == 0 || !is_word_byte(bytes[i - 1]);
        if !bounded_before || (end_of_key < bytes.len() && is_word_byte(bytes[end_of_key])) {
            i += 1;
            continue;
        }
        let mut j = end_of_key;
        let mut assigned = false;
        while j < bytes.len()
            && matches!(bytes[j], b'"' | b'\'' | b'\\' | b' ' | b'\t' | b':' | b'=')
        {
            assigned |= matches!(bytes[j], b':' | b'=');
            j += 1;
        }
        if !assigned {
            i = end_of_key;
            continue;
        }
        if text[j..].starts_with(REDACTED) {
            i = j + REDACTED.len();
            continue;
        }
        let spaces_end = *key != "authorization";
        let start = j;
        while j < bytes.len()
            && !matches!(
                bytes[j],
                b'"' | b'\''
                    | b'\\'
                    | b'\n'
                    | b'\r'
                    | b','
                    | b';'
                    | b'&'
                    | b'}'
                    | b']'
                    | b')'
                    | b'<'
                    | b'>'
            )
            && !(spaces_end && matches!(bytes[j], b' ' | b'\t'))
        {
            j += 1;
        }
        let mut end = j;
        while end > start && matches!(bytes[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        if end > start {
            edits.push((start..end, REDACTED.to_owned()));
        }
        i = j.max(i + 1);
    }
    splice(text, edits)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// `Bearer <token>` (any case, one or more spaces, `+` or `%20` between).
fn bearer_tokens(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut edits = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("bearer") {
        let i = from + found;
        from = i + 6;
        if i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let mut j = i + 6;
        let mut spaced = false;
        loop {
            if j < bytes.len() && matches!(bytes[j], b' ' | b'+') {
                j += 1;
            } else if lower[j..].starts_with("%20") {
                j += 3;
            } else {
                break;
            }
            spaced = true;
        }
        let start = j;
        while j < bytes.len() && is_token_byte(bytes[j]) {
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b'=' {
            j += 1;
        }
        if spaced && j - start >= 8 {
            edits.push((start..j, REDACTED.to_owned()));
            from = j;
        }
    }
    splice(text, edits)
}

fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

/// `eyJ<header>.<payload>.<signature>`: a JWT (its header is JSON, so base64url of `{"`).
fn jwts(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut edits = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("eyJ") {
        let i = from + found;
        from = i + 3;
        if i > 0 && is_b64url_byte(bytes[i - 1]) {
            continue;
        }
        let mut j = i;
        let mut segments = Vec::new();
        loop {
            let start = j;
            while j < bytes.len() && is_b64url_byte(bytes[j]) {
                j += 1;
            }
            segments.push(j - start);
            if segments.len() < 3 && j < bytes.len() && bytes[j] == b'.' {
                j += 1;
            } else {
                break;
            }
        }
        if segments.len() == 3 && segments[0] >= 10 && segments[1] >= 1 {
            edits.push((i..j, REDACTED_JWT.to_owned()));
            from = j;
        }
    }
    splice(text, edits)
}

/// Vault and OpenBao tokens: `hvs.`, `hvb.`, `hvr.` and the older `s.`, `b.`, `r.`
/// followed by the token's characters.
fn vault_tokens(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut edits = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let before_ok = i == 0 || !(is_b64url_byte(bytes[i - 1]) || bytes[i - 1] == b'.');
        let prefix = ["hvs.", "hvb.", "hvr.", "s.", "b.", "r."]
            .into_iter()
            .find(|p| bytes[i..].starts_with(p.as_bytes()));
        let (true, Some(prefix)) = (before_ok, prefix) else {
            i += 1;
            continue;
        };
        let start = i + prefix.len();
        let mut j = start;
        while j < bytes.len() && is_b64url_byte(bytes[j]) {
            j += 1;
        }
        let body = &text[start..j];
        let token = if prefix.len() == 4 {
            body.len() >= 20
        } else {
            // The older form: 24 or more base62 characters, random, so not one word.
            body.len() >= 24
                && body.bytes().all(|b| b.is_ascii_alphanumeric())
                && body
                    .bytes()
                    .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        };
        if token {
            edits.push((i..j, REDACTED.to_owned()));
            i = j;
        } else {
            i += 1;
        }
    }
    splice(text, edits)
}

/// `scheme://user:password@host`: the password.
fn url_passwords(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut edits = Vec::new();
    let mut from = 0;
    let stop = |b: u8| b.is_ascii_whitespace() || matches!(b, b'/' | b'@' | b'"' | b'\'' | b'\\');
    while let Some(found) = text[from..].find("://") {
        let mut j = from + found + 3;
        from = j;
        while j < bytes.len() && !stop(bytes[j]) && bytes[j] != b':' {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b':' {
            continue;
        }
        let start = j + 1;
        let mut k = start;
        while k < bytes.len() && !stop(bytes[k]) {
            k += 1;
        }
        if k < bytes.len() && bytes[k] == b'@' && k > start && &text[start..k] != REDACTED {
            edits.push((start..k, REDACTED.to_owned()));
            from = k;
        }
    }
    splice(text, edits)
}

/// A maximal run of digits: where it is, and whether it belongs to a hexadecimal token
/// (a trace id, a hash, a UUID group), whose digit runs are never card numbers.
struct Group {
    range: Range<usize>,
    hex: bool,
}

/// The length of an escape starting at `i` that is not part of the text's words:
/// `%XX` (URL), `\\uXXXX` and `\\n`-like (JSON).
fn escape_at(bytes: &[u8], i: usize) -> Option<usize> {
    let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
    match bytes.get(i)? {
        b'%' if hex(i + 1) && hex(i + 2) => Some(3),
        b'\\' if bytes.get(i + 1) == Some(&b'u') && (2..6).all(|k| hex(i + k)) => Some(6),
        b'\\' if bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) => Some(2),
        _ => None,
    }
}

/// Whether an escape ends right before `at`.
fn escape_before(bytes: &[u8], at: usize) -> bool {
    [2, 3, 6]
        .into_iter()
        .any(|n| at >= n && escape_at(bytes, at - n) == Some(n))
}

fn digit_groups(bytes: &[u8]) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(n) = escape_at(bytes, i) {
            i += n;
            continue;
        }
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        // The alphanumeric token around the run, escapes (`\\n`, `%2F`) excluded.
        let mut left = start;
        while left > 0 && bytes[left - 1].is_ascii_alphanumeric() && !escape_before(bytes, left) {
            left -= 1;
        }
        let mut right = i;
        while right < bytes.len() && bytes[right].is_ascii_alphanumeric() {
            right += 1;
        }
        let token = &bytes[left..right];
        let hex = token.iter().any(u8::is_ascii_alphabetic)
            && token
                .iter()
                .filter(|b| b.is_ascii_alphabetic())
                .all(u8::is_ascii_hexdigit);
        groups.push(Group {
            range: start..i,
            hex,
        });
    }
    groups
}

/// The length of the separator joining two digit groups at `at`: one space, dash or
/// `+`, or `%20`.
fn separator_at(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b' ' | b'-' | b'+' => Some(1),
        b'%' if bytes.get(at + 1..at + 3).is_some_and(|s| s == b"20") => Some(3),
        _ => None,
    }
}

/// Where the card numbers in `text` are (byte ranges, sorted and disjoint), with
/// their digits.
fn card_number_spans(text: &str) -> Vec<(Range<usize>, String)> {
    let bytes = text.as_bytes();
    let groups = digit_groups(bytes);
    let mut spans = Vec::new();
    let digits_of = |gs: &[Group]| -> String {
        gs.iter()
            .map(|g| &text[g.range.clone()])
            .collect::<String>()
    };
    let mut i = 0;
    while i < groups.len() {
        let g = &groups[i];
        if g.hex {
            i += 1;
            continue;
        }
        let len = g.range.len();
        if (13..=19).contains(&len) {
            if luhn_valid(&text[g.range.clone()]) {
                spans.push((g.range.clone(), text[g.range.clone()].to_owned()));
            }
            i += 1;
            continue;
        }
        // A chain of groups of 3 to 6 digits, each joined to the next by one separator.
        let groupable = |g: &Group| !g.hex && (3..=6).contains(&g.range.len());
        if !groupable(g) {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < groups.len()
            && groupable(&groups[end])
            && separator_at(bytes, groups[end - 1].range.end)
                .is_some_and(|n| groups[end - 1].range.end + n == groups[end].range.start)
        {
            end += 1;
        }
        // The longest window of the chain that is a card number, from each start.
        let mut start = i;
        while start < end {
            let found = (start + 1..end)
                .rev()
                .map(|last| (last, digits_of(&groups[start..=last])))
                .find(|(_, digits)| is_card_number(digits));
            match found {
                Some((last, digits)) => {
                    spans.push((groups[start].range.start..groups[last].range.end, digits));
                    start = last + 1;
                }
                None => start += 1,
            }
        }
        i = end;
    }
    spans
}

/// Every card number masked: `400005******5556`.
fn card_numbers(text: &str) -> Option<String> {
    let edits = card_number_spans(text)
        .into_iter()
        .map(|(range, digits)| (range, mask_digits(&digits)))
        .collect();
    splice(text, edits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = "4000056655665556";

    fn r(text: &str) -> String {
        redact(text).into_owned()
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(PAN));
        assert!(luhn_valid("378282246310005"));
        assert!(luhn_valid("4222222222222"));
        assert!(!luhn_valid("4000056655665557"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("4000x56655665556"));
    }

    #[test]
    fn card_numbers_are_masked_to_bin_and_last_four() {
        assert_eq!(r(PAN), "400005******5556");
        assert_eq!(
            r("card 4000056655665556 declined"),
            "card 400005******5556 declined"
        );
        assert_eq!(
            r("/v1/cards/4000056655665556/reveal"),
            "/v1/cards/400005******5556/reveal"
        );
        assert_eq!(r("?pan=4000056655665556&x=1"), "?pan=400005******5556&x=1");
        assert_eq!(r("378282246310005"), "378282*****0005");
        assert_eq!(r("4222222222222"), "422222***2222");
        assert_eq!(r("6011000990139424"), "601100******9424");
        // 19 digits
        assert_eq!(r("6759649826438453003"), "675964*********3003");
        assert_eq!(
            r("\"pan\":\"4111111111111111\""),
            "\"pan\":\"411111******1111\""
        );
    }

    #[test]
    fn grouped_card_numbers_are_masked() {
        assert_eq!(r("4000 0566 5566 5556"), "400005******5556");
        assert_eq!(r("4000-0566-5566-5556"), "400005******5556");
        assert_eq!(r("4000%200566%205566%205556"), "400005******5556");
        assert_eq!(r("4000+0566+5566+5556"), "400005******5556");
        assert_eq!(r("amex 3782 822463 10005."), "amex 378282*****0005.");
        assert_eq!(
            r("two: 4000 0566 5566 5556 4111 1111 1111 1111"),
            "two: 400005******5556 411111******1111"
        );
    }

    #[test]
    fn card_numbers_glued_to_words_or_escapes_are_masked() {
        assert_eq!(r("pan4000056655665556"), "pan400005******5556");
        assert_eq!(r("line\\n4000056655665556"), "line\\n400005******5556");
        assert_eq!(r("x\\b4000056655665556"), "x\\b400005******5556");
        assert_eq!(r("%2F4000056655665556%2F"), "%2F400005******5556%2F");
        assert_eq!(r("\\u001b4000056655665556"), "\\u001b400005******5556");
        assert_eq!(r("4000056655665556px"), "400005******5556px");
    }

    #[test]
    fn digit_runs_that_are_not_card_numbers_stay() {
        for text in [
            // fails Luhn
            "4000056655665557",
            // too short, too long
            "400005665566",
            "40000566556655561234",
            "12345678901234567890123",
            // ids, amounts, timestamps
            "0196c1b2-7f3a-7000-8000-123456789012",
            "01961234-5678-7000-8123-456789012345",
            "550e8400-e29b-41d4-a716-446655440000",
            "amount 125000 USD, 4000 0566",
            "2026-05-01T12:34:56.123456789Z",
            "2026-05-01 12:34:56+02:00",
            "1746000000000000000",
            "seq=1234567 cursor=89",
            // trace ids, span ids, hashes (hex)
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "trace_id=4bf9200000000000000000000000a4736",
            "0af7651916cd43dd8448eb211c80319c",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "aa4000056655665556",
            // ports and addresses
            "127.0.0.1:5432 and 10.0.0.12:8081",
            "phone 415 555 2671",
        ] {
            assert_eq!(r(text), text, "{text}");
            assert!(matches!(redact(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn bearer_tokens_and_jwts_are_masked() {
        let jwt = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImRldiJ9.eyJzdWIiOiJ0ZXN0LWNsaWVudCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        assert_eq!(r(&format!("token {jwt} here")), "token [REDACTED-JWT] here");
        assert_eq!(r(&format!("/v1/x/{jwt}/y")), "/v1/x/[REDACTED-JWT]/y");
        assert_eq!(r("Bearer abc.def-ghi_jkl~mno+p/q=="), "Bearer [REDACTED]");
        assert_eq!(r("bearer%20opaque123"), "bearer%20[REDACTED]");
        assert_eq!(r("Bearer  opaque123,"), "Bearer  [REDACTED],");
        assert_eq!(r("q=Bearer+opaque123&x=1"), "q=Bearer+[REDACTED]&x=1");
        // not a token
        assert_eq!(r("bearer"), "bearer");
        assert_eq!(r("the bearer of bad news"), "the bearer of bad news");
        assert_eq!(r("eyJ.nope"), "eyJ.nope");
        assert_eq!(r("keyJabc.def.ghi"), "keyJabc.def.ghi");
    }

    #[test]
    fn vault_tokens_are_masked() {
        assert_eq!(
            r("token hvs.CAESIJ7nZ3h2qP8wYdX1kqk0Z2bbbbbbbbbbbbbbbbbb ok"),
            "token [REDACTED] ok"
        );
        assert_eq!(
            r("X-Vault-Token: s.Xa1bC2dE3fG4hI5jK6lM7nO8"),
            "X-Vault-Token: [REDACTED]"
        );
        assert_eq!(r("hvb.AAAAAQJexampleexampleexampleexample"), "[REDACTED]");
        // words and paths that only look like prefixes
        for text in [
            "self.s.abcdefghijklmnopqrstuvwxyz",
            "s.abcdefghijklmnopqrstuvwxyz",
            "hvs.short",
            "crates.io",
            "b.value",
        ] {
            assert_eq!(r(text), text);
        }
    }

    #[test]
    fn credential_values_are_masked() {
        assert_eq!(
            r("Authorization: Bearer abc def"),
            "Authorization: [REDACTED]"
        );
        assert_eq!(
            r("{\"authorization\": \"Basic dXNlcjpwYXNz\", \"host\": \"x\"}"),
            "{\"authorization\": \"[REDACTED]\", \"host\": \"x\"}"
        );
        assert_eq!(
            r("{\\\"authorization\\\":\\\"Bearer abc\\\"}"),
            "{\\\"authorization\\\":\\\"[REDACTED]\\\"}"
        );
        assert_eq!(
            r("proxy-authorization: Basic abc\nhost: x"),
            "proxy-authorization: [REDACTED]\nhost: x"
        );
        assert_eq!(
            r("/v1/x?access_token=abc&cvv=123&ok=1"),
            "/v1/x?access_token=[REDACTED]&cvv=[REDACTED]&ok=1"
        );
        assert_eq!(r("password=hunter2 next"), "password=[REDACTED] next");
        assert_eq!(r("\"cvv\":\"9731\""), "\"cvv\":\"[REDACTED]\"");
        assert_eq!(r("x-api-key: k3y"), "x-api-key: [REDACTED]");
        // a key without a value, and words that merely contain one
        for text in [
            "authorization answered",
            "\"authorization_id\":\"0196c1b2-7f3a-7000-8000-000000000001\"",
            "POST /v1/authorizations",
            "token rejected",
            "Secret([REDACTED])",
            "AUTH__JWT_SECRET must be at least 32 bytes",
            "password=",
        ] {
            assert_eq!(r(text), text, "{text}");
        }
        // idempotent
        let once = r("Authorization: Bearer x");
        assert_eq!(r(&once), once);
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            r("postgres://fleet:s3cret@db:5432/fleet"),
            "postgres://fleet:[REDACTED]@db:5432/fleet"
        );
        assert_eq!(
            r("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:[REDACTED]@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            r("http://127.0.0.1:8200/v1/transit"),
            "http://127.0.0.1:8200/v1/transit"
        );
    }

    #[test]
    fn json_numbers_become_masked_strings() {
        let mut v = serde_json::json!({"pan": 4000056655665556_u64, "n": 12, "cvv": 123,
            "nested": ["4111 1111 1111 1111", {"token": "opaque"}], "none": null});
        redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"pan": "400005******5556", "n": 12, "cvv": "[REDACTED]",
                "nested": ["411111******1111", {"token": "[REDACTED]"}], "none": null})
        );
    }

    #[test]
    fn any_text_is_safe_and_masking_twice_changes_nothing() {
        let samples = [
            "ñ4000056655665556é €s.Xa1bC2dE3fG4hI5jK6lM7nO8 hvs.é Bearer% eyJ€",
            "Authorization:",
            "password=ü&token=ß",
            "%",
            "%2",
            "\\u12",
            "\\",
            "://:@",
            "4000 0566 5566 5556 Authorization: Bearer abcdefghij, pan=4111111111111111",
        ];
        for text in samples {
            let once = r(text);
            assert_eq!(r(&once), once, "{text}");
            assert!(!once.contains(PAN) && !once.contains("4111111111111111"));
        }
    }

    #[test]
    fn contains_card_number_agrees_with_redact() {
        assert!(contains_card_number("Fuel 4000 0566 5566 5556"));
        assert!(!contains_card_number("Fuel 4000056655665557"));
        assert!(!contains_card_number("Fuel Stop 42"));
    }

    #[test]
    fn apply_redacts_unless_switched_off() {
        // The switch is process-wide and only ever turned off by a test's child
        // process; here it is on.
        assert!(enabled());
        assert_eq!(apply(PAN), "400005******5556");
    }
}
