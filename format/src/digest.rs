//! Package identity: the SHA-256 of a package's bytes.
//!
//! A package is named by [`PackageDigest`] everywhere: blob storage, signatures, delta
//! patches, TUF targets and the host client's cache all refer to the same 32 bytes. The text
//! form is `sha256:<64 lowercase hex digits>`, which states the algorithm so the format can
//! grow another one without ambiguity.
//!
//! [`DigestingReader`] and [`DigestingWriter`] compute the digest of a stream as it passes,
//! so nothing has to hold a package in memory to name it.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a SHA-256 digest in bytes.
pub const SHA256_LEN: usize = 32;

/// Prefix of the text form of a digest.
const ALGORITHM_PREFIX: &str = "sha256:";

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The string names another algorithm (`md5:…`, `SHA256:…`).
    #[error(
        "unsupported digest algorithm `{0}`; expected `sha256:` followed by 64 lowercase hex digits"
    )]
    UnsupportedAlgorithm(String),
    /// The hex part does not have 64 digits.
    #[error("a SHA-256 digest has 64 hex digits, found {0}")]
    WrongLength(usize),
    /// The hex part contains something other than `0-9a-f`.
    #[error("a SHA-256 digest is written in lowercase hex digits (0-9, a-f)")]
    NotLowercaseHex,
}

/// Parses `sha256:<hex>` or bare `<hex>` into 32 bytes.
fn parse_sha256(text: &str) -> Result<[u8; SHA256_LEN], DigestParseError> {
    // Bare hex, the usual spelling, without looking for a prefix first.
    if let Ok(hex) = <&[u8; SHA256_LEN * 2]>::try_from(text.as_bytes())
        && let Some(bytes) = decode_lowercase_hex(hex)
    {
        return Ok(bytes);
    }
    let hex_part = match text.split_once(':') {
        Some(("sha256", hex_part)) => hex_part,
        Some((algorithm, _)) => {
            return Err(DigestParseError::UnsupportedAlgorithm(algorithm.to_owned()));
        }
        None => text,
    };
    let Ok(hex_part) = <&[u8; SHA256_LEN * 2]>::try_from(hex_part.as_bytes()) else {
        return Err(DigestParseError::WrongLength(hex_part.chars().count()));
    };
    decode_lowercase_hex(hex_part).ok_or(DigestParseError::NotLowercaseHex)
}

/// Decodes 64 lowercase hex digits (one spelling per digest keeps string comparisons honest,
/// so uppercase is refused). Every digit is turned into its value by arithmetic with no branch
/// and no table, which the compiler does 16 digits at a time: update checks parse one digest
/// per installed plugin, and a table lookup per digit cost five times as many instructions
/// (callgrind: 72 against 352 per digest).
fn decode_lowercase_hex(hex: &[u8; SHA256_LEN * 2]) -> Option<[u8; SHA256_LEN]> {
    let mut values = [0u8; SHA256_LEN * 2];
    let mut any_not_hex = false;
    for (value, &digit) in values.iter_mut().zip(hex) {
        let from_zero = digit.wrapping_sub(b'0');
        let from_a = digit.wrapping_sub(b'a');
        let decimal = from_zero < 10;
        *value = if decimal {
            from_zero
        } else {
            from_a.wrapping_add(10)
        };
        any_not_hex |= !decimal & (from_a >= 6);
    }
    if any_not_hex {
        return None;
    }
    let mut bytes = [0u8; SHA256_LEN];
    for (byte, pair) in bytes.iter_mut().zip(values.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Some(bytes)
}

/// Defines a SHA-256 newtype with the shared text, serde and constructor surface.
macro_rules! sha256_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; SHA256_LEN]);

        impl $name {
            /// Computes the SHA-256 of `bytes`.
            pub fn of(bytes: &[u8]) -> Self {
                let digest = ring::digest::digest(&SHA256, bytes);
                Self::from_ring(digest)
            }

            /// Wraps 32 bytes that already are a SHA-256 (for example read from a database).
            pub const fn from_bytes(bytes: [u8; SHA256_LEN]) -> Self {
                Self(bytes)
            }

            /// The 32 raw bytes.
            pub const fn as_bytes(&self) -> &[u8; SHA256_LEN] {
                &self.0
            }

            /// The 64 lowercase hex digits, without the `sha256:` prefix (blob keys use this).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            fn from_ring(digest: ring::digest::Digest) -> Self {
                let mut bytes = [0u8; SHA256_LEN];
                // ring's SHA-256 output is always 32 bytes.
                bytes.copy_from_slice(digest.as_ref());
                Self(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{ALGORITHM_PREFIX}{}", self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = DigestParseError;

            /// Accepts `sha256:<64 lowercase hex>` and bare `<64 lowercase hex>`.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_sha256(text).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

sha256_newtype! {
    /// The identity of a package: the SHA-256 of its complete byte stream.
    ///
    /// This is what developers sign, what the store and the CDN address, and what a host
    /// application checks after a download or a delta patch. Displays and serializes as
    /// `sha256:<64 lowercase hex digits>`.
    PackageDigest
}

sha256_newtype! {
    /// The SHA-256 of one file's contents inside a package.
    ///
    /// Lets the scanner and the host client name individual files (for example to skip
    /// unchanged files, or to match a scan finding) without keeping them. Same text form as
    /// [`PackageDigest`].
    FileDigest
}

/// A reader that computes the [`PackageDigest`] and length of everything read through it.
///
/// Bytes are counted when they are returned by `read`, so the digest covers exactly what the
/// consumer saw.
pub struct DigestingReader<R> {
    inner: R,
    hasher: Context,
    length: u64,
}

impl<R> DigestingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Context::new(&SHA256),
            length: 0,
        }
    }

    /// Bytes read so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (PackageDigest, u64) {
        (PackageDigest::from_ring(self.hasher.finish()), self.length)
    }
}

impl<R: Read> Read for DigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        let seen = buf.get(..read).unwrap_or_default();
        self.hasher.update(seen);
        self.length += read as u64;
        Ok(read)
    }
}

impl<R> fmt::Debug for DigestingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestingReader")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// A writer that computes the [`PackageDigest`] and length of everything written through it.
///
/// Only the bytes the inner writer accepted are hashed, so a short write cannot make the
/// digest disagree with the output.
pub struct DigestingWriter<W> {
    inner: W,
    hasher: Context,
    length: u64,
}

impl<W> DigestingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Context::new(&SHA256),
            length: 0,
        }
    }

    /// Bytes written so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The digest and length of everything written so far.
    pub fn finish(self) -> (PackageDigest, u64) {
        (PackageDigest::from_ring(self.hasher.finish()), self.length)
    }
}

impl<W: Write> Write for DigestingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        let accepted = buf.get(..written).unwrap_or_default();
        self.hasher.update(accepted);
        self.length += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> fmt::Debug for DigestingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestingWriter")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256 of the empty string and of "abc" (FIPS 180-2 test vectors).
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn digest_matches_known_vectors() {
        assert_eq!(PackageDigest::of(b"").to_hex(), EMPTY);
        assert_eq!(PackageDigest::of(b"abc").to_hex(), ABC);
        assert_eq!(
            PackageDigest::of(b"abc").to_string(),
            format!("sha256:{ABC}")
        );
    }

    #[test]
    fn parses_prefixed_and_bare_hex() {
        let prefixed: PackageDigest = format!("sha256:{ABC}").parse().unwrap();
        let bare: PackageDigest = ABC.parse().unwrap();
        assert_eq!(prefixed, bare);
        assert_eq!(prefixed, PackageDigest::of(b"abc"));
        assert_eq!(
            PackageDigest::from_bytes(*prefixed.as_bytes()),
            prefixed,
            "bytes round trip"
        );
    }

    #[test]
    fn refuses_other_spellings() {
        let upper = ABC.to_uppercase();
        assert_eq!(
            upper.parse::<PackageDigest>(),
            Err(DigestParseError::NotLowercaseHex)
        );
        assert_eq!(
            format!("SHA256:{ABC}").parse::<PackageDigest>(),
            Err(DigestParseError::UnsupportedAlgorithm("SHA256".into()))
        );
        assert_eq!(
            format!("md5:{ABC}").parse::<PackageDigest>(),
            Err(DigestParseError::UnsupportedAlgorithm("md5".into()))
        );
        assert_eq!(
            ABC[..63].parse::<PackageDigest>(),
            Err(DigestParseError::WrongLength(63))
        );
        assert_eq!(
            format!("{}g", &ABC[..63]).parse::<PackageDigest>(),
            Err(DigestParseError::NotLowercaseHex)
        );
        assert_eq!(
            format!(" {}", &ABC[..63]).parse::<PackageDigest>(),
            Err(DigestParseError::NotLowercaseHex)
        );
        assert!("".parse::<PackageDigest>().is_err());
        // Multi-byte characters must not be mistaken for two hex digits each.
        let tricky = format!("{}é", &ABC[..62]);
        assert_eq!(tricky.len(), 64);
        assert_eq!(
            tricky.parse::<PackageDigest>(),
            Err(DigestParseError::NotLowercaseHex)
        );
    }

    #[test]
    fn every_byte_is_judged_as_a_lowercase_hex_digit_or_refused() {
        for byte in 0..=u8::MAX {
            let digit = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
            // The ends and both sides of a 16-digit boundary (the decoder works 16 at a time).
            for position in [0, 1, 15, 16, 62, 63] {
                let mut text = *b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
                text[position] = byte;
                let decoded = decode_lowercase_hex(&text);
                assert_eq!(decoded.is_some(), digit, "byte {byte:#04x} at {position}");
                if let Some(decoded) = decoded {
                    let mut expected = [0u8; SHA256_LEN];
                    hex::decode_to_slice(text, &mut expected).unwrap();
                    assert_eq!(decoded, expected, "byte {byte:#04x} at {position}");
                }
            }
        }
    }

    #[test]
    fn serde_uses_the_prefixed_string() {
        let digest = PackageDigest::of(b"abc");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"sha256:{ABC}\""));
        assert_eq!(
            serde_json::from_str::<PackageDigest>(&json).unwrap(),
            digest
        );
        assert!(serde_json::from_str::<PackageDigest>("\"sha256:00\"").is_err());
        assert!(serde_json::from_str::<PackageDigest>("42").is_err());
    }

    #[test]
    fn debug_names_the_type() {
        assert_eq!(
            format!("{:?}", FileDigest::of(b"")),
            format!("FileDigest(sha256:{EMPTY})")
        );
    }

    #[test]
    fn streaming_wrappers_agree_with_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let expected = PackageDigest::of(&data);

        let mut reader = DigestingReader::new(&data[..]);
        let mut sink = Vec::new();
        // Small reads exercise the incremental path.
        let mut chunk = [0u8; 777];
        loop {
            let n = reader.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            sink.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(reader.length(), data.len() as u64);
        assert_eq!(reader.finish(), (expected, data.len() as u64));

        let mut writer = DigestingWriter::new(Vec::new());
        for piece in data.chunks(1000) {
            writer.write_all(piece).unwrap();
        }
        assert_eq!(writer.get_ref(), &data);
        assert_eq!(writer.finish(), (expected, data.len() as u64));
    }

    /// A writer that takes at most 3 bytes per call.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_hash_only_accepted_bytes() {
        let mut writer = DigestingWriter::new(Trickle(Vec::new()));
        assert_eq!(writer.write(b"abcdef").unwrap(), 3);
        writer.write_all(b"def").unwrap();
        assert_eq!(writer.finish(), (PackageDigest::of(b"abcdef"), 6));
    }
}
