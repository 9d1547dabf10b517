//! File names as the service accepts them.
//!
//! A *file name* is one path segment inside the volume: the only thing a client
//! chooses about where its bytes land. Every route that takes a name goes
//! through [`FileName::parse`], so a name like `../../etc/passwd`, `/tmp/x` or
//! `a\b` can never become a path outside the storage folder.

use std::fmt;

use thiserror::Error;

/// Prefix of the service's own temporary files; reserved so a client can
/// neither see nor overwrite an upload in progress.
pub const TEMP_PREFIX: &str = ".berth-tmp-";

/// Longest name in bytes: the limit of ext4, xfs and most other filesystems.
pub const MAX_NAME_BYTES: usize = 255;

/// A validated file name: one UTF-8 path segment, safe to join to the storage path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

/// Why a name was refused; the message is shown to the client as is.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("file name is empty")]
    Empty,
    #[error("file name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("file name must not be '.' or '..'")]
    Dots,
    #[error("file name must be a single path segment without '/' or '\\'")]
    Separator,
    #[error("file name must not contain NUL or control characters")]
    Control,
    #[error("file names starting with '{TEMP_PREFIX}' are reserved")]
    Reserved,
    #[error("file name must not contain invisible or text-direction characters (they make a listing lie)")]
    Invisible,
}

/// Zero-width and bidirectional formatting characters: they render as
/// nothing, or reorder what follows, so `invoice\u{202E}fdp.exe` lists as
/// `invoiceexe.pdf` and `a\u{200B}b` as a second `ab`.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{061C}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}')
}

impl FileName {
    /// Checks `raw` against the rules above; the only way to build a `FileName`.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        if raw == "." || raw == ".." {
            return Err(NameError::Dots);
        }
        if raw.contains(['/', '\\']) {
            return Err(NameError::Separator);
        }
        // char::is_control covers NUL, the C0 and C1 ranges and DEL.
        if raw.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if raw.chars().any(is_invisible) {
            return Err(NameError::Invisible);
        }
        // Case-insensitive: on a case-insensitive filesystem (a volume
        // mounted from macOS, say) `.BERTH-TMP-x` is one of ours.
        if raw.get(..TEMP_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(TEMP_PREFIX)) {
            return Err(NameError::Reserved);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["test.txt", "a", ".hidden", "...", "naïve café.png", "x y", &"a".repeat(255)] {
            assert_eq!(FileName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_traversal_and_bad_bytes() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (".", NameError::Dots),
            ("..", NameError::Dots),
            ("../x", NameError::Separator),
            ("/etc/passwd", NameError::Separator),
            ("a\\b", NameError::Separator),
            ("..\\..\\x", NameError::Separator),
            ("a\0b", NameError::Control),
            ("a\nb", NameError::Control),
            ("a\u{7f}", NameError::Control),
            ("a\u{85}", NameError::Control),
            (".berth-tmp-123", NameError::Reserved),
        ];
        for (raw, want) in cases {
            assert_eq!(FileName::parse(raw).unwrap_err(), *want, "{raw:?}");
        }
        // 256 bytes made of 2-byte characters: 128 chars, too long in bytes.
        assert_eq!(FileName::parse(&"é".repeat(128)).unwrap_err(), NameError::TooLong);
    }

    /// Issue 20, defect 8: `.BERTH-TMP-x` was accepted beside the reserved
    /// prefix.
    #[test]
    fn the_reserved_prefix_is_reserved_in_any_case() {
        for raw in [".BERTH-TMP-x", ".Berth-Tmp-1", ".berth-TMP-"] {
            assert_eq!(FileName::parse(raw).unwrap_err(), NameError::Reserved, "{raw:?}");
        }
        assert!(FileName::parse(".berth-tm").is_ok());
    }

    /// Issue 20, defect 8: zero-width and bidi control characters were
    /// accepted, so a listing could show two names alike, or one reversed.
    #[test]
    fn names_that_would_spoof_a_listing_are_refused() {
        for raw in ["a\u{200B}b", "invoice\u{202E}fdp.exe", "\u{FEFF}x", "x\u{2066}y\u{2069}", "soft\u{00AD}hyphen"] {
            assert_eq!(FileName::parse(raw).unwrap_err(), NameError::Invisible, "{raw:?}");
        }
        assert!(FileName::parse("עברית.txt").is_ok(), "right-to-left letters themselves are fine");
    }
}
