//! Password hashing with Argon2id (PHC strings at rest).

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};

/// Shortest accepted password.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest accepted password; bounds hashing cost per request.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A hash of a password nobody can have, verified against when the user does not exist so
/// that response time does not reveal which usernames exist.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not a real password").unwrap_or_default());

/// Hashes with Argon2id and a random salt. CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a stored PHC string; `None` runs a dummy check of equal cost.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    let (hash, real) = match stored {
        Some(h) => (h, true),
        None => (DUMMY_HASH.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("wrong horse battery", Some(&hash)));
        assert!(!verify_password("not a real password", None));
    }
}
