//! Claims and generations.
//!
//! A *claim* is a stable logical volume identity, `<service>-<ordinal>` for
//! the claims of a service (like a StatefulSet's PVC); it outlives every task
//! that mounts it. A *generation* is one incarnation of a claim; its number
//! only grows and doubles as the fencing token of the controller.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest claim name: short enough for tags, file names and AWS tag values.
pub const MAX_CLAIM_LEN: usize = 63;

/// A validated claim name: lowercase letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit, at most 63 characters. The rules keep it
/// safe as a snapshot tag (no `,` or `=`), a folder name and a DNS label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClaimName(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClaimNameError {
    #[error("claim name is empty")]
    Empty,
    #[error("claim name '{0}' is longer than {MAX_CLAIM_LEN} characters")]
    TooLong(String),
    #[error("claim name '{0}' may only hold lowercase letters, digits, '-', '_' and '.', and must start with a letter or digit")]
    Invalid(String),
}

impl ClaimName {
    pub fn parse(raw: &str) -> Result<Self, ClaimNameError> {
        if raw.is_empty() {
            return Err(ClaimNameError::Empty);
        }
        if raw.len() > MAX_CLAIM_LEN {
            return Err(ClaimNameError::TooLong(raw.to_owned()));
        }
        let first_ok = raw.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if !first_ok || !rest_ok {
            return Err(ClaimNameError::Invalid(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The claim of `service` with `ordinal`, as the platform names them.
    pub fn of_service(service: &str, ordinal: u32) -> Result<Self, ClaimNameError> {
        Self::parse(&format!("{service}-{ordinal}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClaimName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ClaimName {
    type Err = ClaimNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ClaimName {
    type Error = ClaimNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ClaimName> for String {
    fn from(c: ClaimName) -> String {
        c.0
    }
}

/// One incarnation number of a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names() {
        for ok in ["web-0", "db.primary-12", "a", "0x", &"a".repeat(63)] {
            assert!(ClaimName::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(ClaimName::parse(""), Err(ClaimNameError::Empty));
        assert!(matches!(ClaimName::parse(&"a".repeat(64)), Err(ClaimNameError::TooLong(_))));
        for bad in ["Web-0", "-x", "a,b", "a=b", "a b", "a/b", "../x", "é"] {
            assert!(matches!(ClaimName::parse(bad), Err(ClaimNameError::Invalid(_))), "{bad}");
        }
        assert_eq!(ClaimName::of_service("web", 3).unwrap().as_str(), "web-3");
    }
}
