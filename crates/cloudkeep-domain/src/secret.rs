//! A string that must never be logged, returned or written in the clear.

use std::fmt;

use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

/// Plaintext of a secret (a client secret, a password, a token). It
/// redacts itself in `Debug`, `Display` and `Serialize`, and its memory is
/// zeroed on drop; `expose` is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

const REDACTED: &str = "[redacted]";

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(Zeroizing::new(value.into()))
    }

    /// The plaintext. Call it only where the value leaves for its one
    /// legitimate use (a token request, a hash, an encryption).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_itself() {
        let s = SecretString::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&s).expect("json"),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(s.expose(), "hunter2-very-secret");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            secret: SecretString,
        }
        assert!(!format!("{:?}", Holder { secret: s }).contains("hunter2"));
    }
}
