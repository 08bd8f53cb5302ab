//! Passwords (argon2id) and API tokens (random, stored only as hashes).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is too short: use at least {0} characters")]
    TooShort(usize),
    #[error("could not hash the password: {0}")]
    Hash(String),
}

pub const MIN_PASSWORD_LEN: usize = 12;

/// An argon2id PHC string for a password.
pub fn hash_password(password: &SecretString) -> Result<String, PasswordError> {
    if password.expose().chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort(MIN_PASSWORD_LEN));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC string (false for a malformed one).
pub fn verify_password(password: &SecretString, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.expose().as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random secret with a recognisable prefix (`ck_`, `cks_`).
pub fn random_token(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::new(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A one-time password for a new owner: readable, long enough.
pub fn random_password() -> SecretString {
    const CHARS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::new(
        bytes
            .iter()
            .map(|b| CHARS[*b as usize % CHARS.len()] as char)
            .collect::<String>(),
    )
}

/// How tokens and session ids are stored: SHA-256, hex. They are random and
/// long, so a fast hash is enough (no dictionary to attack).
pub fn token_hash(token: &SecretString) -> String {
    hex::encode(Sha256::digest(token.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let pw = SecretString::new("correct horse battery");
        let phc = hash_password(&pw).expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(&pw, &phc));
        assert!(!verify_password(
            &SecretString::new("wrong horse battery"),
            &phc
        ));
        assert!(!verify_password(&pw, "not a hash"));
        assert!(matches!(
            hash_password(&SecretString::new("short")),
            Err(PasswordError::TooShort(_))
        ));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = random_token("ck_");
        let b = random_token("ck_");
        assert_ne!(a, b);
        assert!(a.expose().starts_with("ck_") && a.expose().len() > 40);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(random_password().expose().len(), 20);
    }
}
