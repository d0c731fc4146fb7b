//! Thresholds of the static analyzers.
//!
//! Like the package limits, each is a named constant with its reason, gathered in
//! [`StaticLimits`] so that an operator can tighten one in the worker's configuration.

use serde::{Deserialize, Serialize};

use crate::dynamic_wasm::DynamicLimits;

/// Largest WebAssembly module analysed (64 MiB); larger ones get a high finding instead.
///
/// Real plugins are well below: the largest third-party modules the scanner is tested on
/// (esbuild, SQLite) are 10-15 MiB. The bound keeps one scan's time and memory predictable.
pub const MAX_WASM_SIZE: u64 = 64 << 20;

/// Largest native entry point analysed (256 MiB).
pub const MAX_NATIVE_SIZE: u64 = 256 << 20;

/// Most initial pages of a memory (4096 pages = 256 MiB).
///
/// Initial memory is committed at every instantiation, before the plugin does anything;
/// toolchains start at 1-16 MiB and grow on demand.
pub const MAX_INITIAL_MEMORY_PAGES: u64 = 4096;

/// Most pages a memory may declare as its maximum (16384 pages = 1 GiB): above this the
/// declaration asks for more than hosts allow, and growth will fail at run time.
pub const MAX_MEMORY_PAGES: u64 = 16_384;

/// Most initial elements of a table (100 000): a function table that size is already a
/// program of hundreds of thousands of functions.
pub const MAX_INITIAL_TABLE_ELEMENTS: u64 = 100_000;

/// Most elements a table may declare as its maximum (1 000 000).
pub const MAX_TABLE_ELEMENTS: u64 = 1_000_000;

/// Shortest base64 run reported (64 characters, 48 bytes: longer than any hash or key id
/// spelled in base64, shorter than any embedded key or payload).
pub const MIN_BASE64_LEN: usize = 64;

/// Shortest hexadecimal run reported (64 digits, a 256-bit value). Shorter runs are
/// mostly hashes (a 40-digit git commit id is in every Rust binary with panics).
pub const MIN_HEX_LEN: usize = 64;

/// Floor of [`StaticLimits::min_base64_len`] and [`StaticLimits::min_hex_len`]: shorter
/// runs are everywhere in binaries.
pub const MIN_STRING_RUN: usize = 32;

/// Entropy (bits per byte) above which data counts as compressed or encrypted (7.5). Text,
/// code and tables are at 4-6.5; deflate, zstd and ciphertext at 7.9 and above.
pub const HIGH_ENTROPY_BITS: f64 = 7.5;

/// Smallest high-entropy region reported (4 KiB): small compressed icons and hash tables
/// are common, payloads worth hiding are larger.
pub const HIGH_ENTROPY_MIN_LEN: usize = 4096;

/// Entropy of an executable PE section above which the code is taken as packed (7.2;
/// machine code is at 5.5-6.8).
pub const PACKED_CODE_BITS: f64 = 7.2;

/// The thresholds the static analyzers use; the defaults are this module's constants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticLimits {
    /// See [`MAX_WASM_SIZE`].
    pub max_wasm_size: u64,
    /// See [`MAX_NATIVE_SIZE`].
    pub max_native_size: u64,
    /// See [`MAX_INITIAL_MEMORY_PAGES`].
    pub max_initial_memory_pages: u64,
    /// See [`MAX_MEMORY_PAGES`].
    pub max_memory_pages: u64,
    /// See [`MAX_INITIAL_TABLE_ELEMENTS`].
    pub max_initial_table_elements: u64,
    /// See [`MAX_TABLE_ELEMENTS`].
    pub max_table_elements: u64,
    /// See [`MIN_BASE64_LEN`]; values below [`MIN_STRING_RUN`] act as it.
    pub min_base64_len: usize,
    /// See [`MIN_HEX_LEN`]; values below [`MIN_STRING_RUN`] act as it.
    pub min_hex_len: usize,
    /// See [`HIGH_ENTROPY_BITS`].
    pub high_entropy_bits: f64,
    /// See [`HIGH_ENTROPY_MIN_LEN`].
    pub high_entropy_min_len: usize,
    /// See [`PACKED_CODE_BITS`].
    pub packed_code_bits: f64,
}

impl Default for StaticLimits {
    fn default() -> Self {
        Self {
            max_wasm_size: MAX_WASM_SIZE,
            max_native_size: MAX_NATIVE_SIZE,
            max_initial_memory_pages: MAX_INITIAL_MEMORY_PAGES,
            max_memory_pages: MAX_MEMORY_PAGES,
            max_initial_table_elements: MAX_INITIAL_TABLE_ELEMENTS,
            max_table_elements: MAX_TABLE_ELEMENTS,
            min_base64_len: MIN_BASE64_LEN,
            min_hex_len: MIN_HEX_LEN,
            high_entropy_bits: HIGH_ENTROPY_BITS,
            high_entropy_min_len: HIGH_ENTROPY_MIN_LEN,
            packed_code_bits: PACKED_CODE_BITS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_can_tighten_one_limit() {
        let limits: StaticLimits = serde_json::from_str(r#"{ "max_wasm_size": 1024 }"#).unwrap();
        assert_eq!(limits.max_wasm_size, 1024);
        assert_eq!(limits.min_hex_len, MIN_HEX_LEN);
        assert!(serde_json::from_str::<StaticLimits>(r#"{ "max_wasm": 1 }"#).is_err());
    }
}

/// Every threshold of one analysis, as an operator's limits file (`--limits FILE`) holds
/// them: `[static]` for [`StaticLimits`], `[dynamic]` for [`DynamicLimits`]. A missing key
/// keeps its default; an unknown one is refused, so a typo cannot silently loosen nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanLimits {
    /// The static analyzers' thresholds.
    #[serde(rename = "static")]
    pub static_limits: StaticLimits,
    /// The dynamic run's limits.
    #[serde(rename = "dynamic")]
    pub dynamic_limits: DynamicLimits,
}

impl ScanLimits {
    /// Reads a limits file, naming the file in every error.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid limits file (unknown keys included).
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the limits file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in the limits file {}", path.display()))
    }
}
