//! Rules for user-chosen names: usernames, publisher names, plugin names.
//!
//! Names are ASCII lowercase letters, digits and single hyphens, starting with a letter, so
//! they are safe in URLs, file names on every OS, and plugin ids (`publisher/name`). Names
//! that could impersonate the store or its staff are reserved.

use crate::error::{ApiError, ProblemKind};

/// Shortest name.
pub const MIN_NAME_LEN: usize = 2;
/// Longest name.
pub const MAX_NAME_LEN: usize = 39;

/// Publisher and user names nobody may register.
pub const RESERVED_NAMES: &[&str] = &[
    "admin",
    "administrator",
    "api",
    "blobs",
    "docs",
    "help",
    "login",
    "logout",
    "me",
    "metrics",
    "moderator",
    "new",
    "null",
    "official",
    "plugstore",
    "register",
    "reviewer",
    "root",
    "security",
    "settings",
    "staff",
    "support",
    "system",
    "undefined",
    "www",
];

/// Checks a name against the shared rules; `what` names the field in the error.
pub fn validate_name(what: &str, name: &str) -> Result<(), ApiError> {
    let rule = "use 2-39 lowercase letters, digits or single hyphens, starting with a letter and not ending with a hyphen";
    let valid = (MIN_NAME_LEN..=MAX_NAME_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ApiError::invalid(format!(
            "{what} `{name}` is not allowed: {rule}"
        )));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(ApiError::new(
            ProblemKind::ReservedName,
            format!("{what} `{name}` is reserved; choose another"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for ok in ["acme", "a1", "my-plugins", "x2-y3"] {
            assert!(validate_name("name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "A",
            "a",
            "1abc",
            "-abc",
            "abc-",
            "a--b",
            "a_b",
            "a.b",
            "ab/",
            "ä",
            &"a".repeat(40),
        ] {
            assert_eq!(
                validate_name("name", bad).unwrap_err().kind(),
                ProblemKind::InvalidInput,
                "{bad}"
            );
        }
        assert_eq!(
            validate_name("name", "plugstore").unwrap_err().kind(),
            ProblemKind::ReservedName
        );
    }
}
