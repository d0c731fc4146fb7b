//! The SHA-256 digests TUF metadata lists: of targets, of metadata files, of certificate chains.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{self, SHA256};
use plugstore_format::digest::{PackageDigest, SHA256_LEN};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A SHA-256 digest as TUF writes it: 64 lowercase hex digits, no algorithm prefix (the
/// algorithm is the key of the `hashes` object it sits in).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; SHA256_LEN]);

impl Sha256 {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut out = [0u8; SHA256_LEN];
        out.copy_from_slice(digest::digest(&SHA256, bytes).as_ref());
        Self(out)
    }

    /// Wraps 32 bytes that already are a SHA-256.
    pub const fn from_bytes(bytes: [u8; SHA256_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; SHA256_LEN] {
        &self.0
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Takes a digest decoded from metadata (tough's `Decoded<Hex>`), refusing other lengths.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; SHA256_LEN]>::try_from(bytes).ok().map(Self)
    }
}

impl From<PackageDigest> for Sha256 {
    fn from(digest: PackageDigest) -> Self {
        Self(*digest.as_bytes())
    }
}

impl From<Sha256> for PackageDigest {
    fn from(digest: Sha256) -> Self {
        PackageDigest::from_bytes(digest.0)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SHA-256 digest (64 lowercase hex digits)")]
pub struct Sha256ParseError(pub String);

impl FromStr for Sha256 {
    type Err = Sha256ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // One spelling per digest: uppercase would make equal digests compare unequal as
        // strings, in paths and in database keys.
        let well_formed = text.len() == SHA256_LEN * 2
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut bytes = [0u8; SHA256_LEN];
        if !well_formed || hex::decode_to_slice(text, &mut bytes).is_err() {
            return Err(Sha256ParseError(text.to_owned()));
        }
        Ok(Self(bytes))
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_lowercase_hex_of_the_right_length() {
        let empty = Sha256::of(b"");
        assert_eq!(empty.to_hex().parse::<Sha256>(), Ok(empty));
        assert!(empty.to_hex().to_uppercase().parse::<Sha256>().is_err());
        assert!("abc".parse::<Sha256>().is_err());
        assert!(
            format!("sha256:{}", empty.to_hex())
                .parse::<Sha256>()
                .is_err()
        );
    }
}
