//! Programs (tenants): every account belongs to one, and a token may be bound to one
//! (ADR 0018). A bound caller sees only its own program's resources; a token without a
//! program is a platform token and sees every program.

/// The program of accounts opened without one, and of events that name none.
pub const DEFAULT: &str = "default";

/// A program id: a slug of 1 to 63 lowercase letters, digits and hyphens, starting
/// with a letter or digit.
pub fn parse(raw: &str) -> Result<String, &'static str> {
    let ok = !raw.is_empty()
        && raw.len() <= 63
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("must be 1 to 63 lowercase letters, digits or hyphens, not starting with a hyphen")
    }
}

/// Whether a caller bound to `bound` (`None`: a platform caller) may see a resource of
/// `program`. The one rule every context applies where it reads a resource's row.
pub fn visible(bound: Option<&str>, program: &str) -> bool {
    bound.is_none_or(|b| b == program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_checked() {
        assert_eq!(parse("acme-fleet-2").unwrap(), "acme-fleet-2");
        for bad in [
            "",
            "-acme",
            "Acme",
            "acme fleet",
            "acme_fleet",
            "ü",
            &"a".repeat(64),
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn a_bound_caller_sees_its_own_program_only() {
        assert!(visible(Some("acme"), "acme"));
        assert!(!visible(Some("acme"), "globex"));
        assert!(!visible(Some("acme"), DEFAULT));
        assert!(visible(None, "acme"));
        assert!(visible(None, DEFAULT));
    }
}
