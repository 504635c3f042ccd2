//! Typed identifiers: UUIDv7 (time-ordered, so indexes stay append-friendly).

/// Declares a typed id wrapping a UUIDv7.
#[macro_export]
macro_rules! typed_id {
    ($name:ident) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
            pub fn parse(s: &str) -> Option<Self> {
                uuid::Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

typed_id!(AccountId);
typed_id!(CardId);
typed_id!(AuthorizationId);
typed_id!(CaptureId);
typed_id!(BatchId);
typed_id!(EventId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_ordered_by_creation() {
        let a = AccountId::new();
        let b = AccountId::new();
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a < b);
        assert_eq!(AccountId::parse(&a.to_string()), Some(a));
        assert_eq!(AccountId::parse("not-a-uuid"), None);
    }
}
