//! Binary delta patches between two packages: the `bsdiff4z` format and its bounded apply.
//!
//! A patch is bsdiff's BSDIFF40 layout with a different magic and the third stream recompressed
//! (see docs/src/adr/0003-binary-deltas.md for the measurements behind it):
//!
//! ```text
//! offset  size  field
//! 0       8     magic "BSDIFF4Z"
//! 8       8     length of the control stream (bzip2)
//! 16      8     length of the diff stream (bzip2)
//! 24      8     length of the new file
//! 32      …     control stream: (add, copy, seek) triples of bsdiff's signed 64-bit integers
//! …       …     diff stream: bytes added to the base's bytes, `add` at a time
//! …       …     extra stream (one zstd frame): new bytes, `copy` at a time
//! ```
//!
//! The store makes patches with [`make_patch`] (feature `make-patches`: qbsdiff's search, for
//! the server only); hosts apply them here. A patch comes from the network, so [`apply_patch`] trusts nothing in it: it writes at
//! most the new length the caller learnt from signed metadata, reads only inside the base,
//! refuses a patch that makes no progress, and caps the zstd window (and so the decoder's
//! memory). The caller still checks the SHA-256 of the result against the signed target, and
//! falls back to the full package on any error: a corrupted patch can produce wrong bytes
//! without any structural error.

use std::io::{self, Read, Write};

/// The first eight bytes of every patch.
pub const MAGIC: &[u8; 8] = b"BSDIFF4Z";

/// The format's name where patches are described (the `format` of a TUF patch target).
pub const FORMAT_ID: &str = "bsdiff4z";

/// Bytes before the control stream: magic and three lengths.
const HEADER_LEN: usize = 32;

/// Largest zstd window a patch may ask for (2^23 = 8 MiB, what level 19 uses): a hostile
/// patch cannot make the host allocate more for decoding.
pub const MAX_WINDOW_LOG: u32 = 23;

/// Controls in a row that write nothing: bsdiff emits at most one between two that do, so a
/// longer run is a patch built to spin.
const MAX_IDLE_CONTROLS: u32 = 2;

/// Size of the buffer the diff stream is added through.
const CHUNK: usize = 64 * 1024;

/// zstd level of the extra stream: the best size for the time on real modules (ADR 0003).
#[cfg(feature = "make-patches")]
const EXTRA_ZSTD_LEVEL: i32 = 19;

/// Makes the `bsdiff4z` patch that turns `base` into `target`. CPU-bound: seconds for a
/// 12 MB module; call it off the async runtime.
///
/// # Errors
/// When qbsdiff or a compressor fails (they write to memory, so only on a bug).
#[cfg(feature = "make-patches")]
pub fn make_patch(base: &[u8], target: &[u8]) -> io::Result<Vec<u8>> {
    use qbsdiff::{Bsdiff, ParallelScheme};

    let mut bsdiff40 = Vec::new();
    Bsdiff::new(base, target)
        .small_match(8)
        // The default is Auto (the setter's documentation says otherwise): one job, one core.
        .parallel_scheme(ParallelScheme::Never)
        .compression_level(6)
        .compare(io::Cursor::new(&mut bsdiff40))?;
    let length = |at: usize| -> io::Result<usize> {
        let raw = u64::from_le_bytes(bsdiff40[at..at + 8].try_into().expect("eight bytes"));
        usize::try_from(raw).map_err(|_| io::Error::other("qbsdiff wrote a negative length"))
    };
    let extra_at = HEADER_LEN + length(8)? + length(16)?;
    // The extra stream (the new bytes) compresses better with zstd than with bzip2; the control
    // and diff streams stay as qbsdiff wrote them.
    let mut extra = Vec::new();
    bzip2::read::BzDecoder::new(&bsdiff40[extra_at..]).read_to_end(&mut extra)?;
    let mut patch = Vec::with_capacity(bsdiff40.len());
    patch.extend_from_slice(MAGIC);
    patch.extend_from_slice(&bsdiff40[8..extra_at]);
    // The streaming encoder on purpose: zstd's one-shot API skips its block splitter.
    let mut encoder = zstd::stream::write::Encoder::new(patch, EXTRA_ZSTD_LEVEL)?;
    encoder.set_pledged_src_size(Some(extra.len() as u64))?;
    encoder.include_contentsize(true)?;
    encoder.write_all(&extra)?;
    encoder.finish()
}

/// Why a patch was refused. Every one means: download the full package instead.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The patch does not start with [`MAGIC`] or is shorter than its header.
    #[error("not a bsdiff4z patch")]
    NotAPatch,
    /// The patch produces a file of another length than the signed target's.
    #[error("the patch makes {patch} bytes, the target has {expected}")]
    WrongLength {
        /// Length in the patch header.
        patch: u64,
        /// Length from signed metadata.
        expected: u64,
    },
    /// A length or control field is negative or out of range, or a stream is cut short.
    #[error("malformed patch: {0}")]
    Malformed(&'static str),
    /// Reading the patch's streams or writing the result failed.
    #[error("applying the patch: {0}")]
    Io(#[from] io::Error),
}

/// bsdiff's integer: 63 bits of magnitude, little-endian, and a sign bit.
fn read_offset(bytes: &[u8; 8]) -> i64 {
    let raw = u64::from_le_bytes(*bytes);
    let magnitude = (raw & !(1 << 63)) as i64;
    if raw >> 63 == 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// A field that must not be negative, as a size.
fn read_size(bytes: &[u8; 8], what: &'static str) -> Result<u64, DeltaError> {
    u64::try_from(read_offset(bytes)).map_err(|_| DeltaError::Malformed(what))
}

fn eight(bytes: &[u8], at: usize) -> &[u8; 8] {
    bytes[at..at + 8].try_into().expect("eight bytes")
}

/// The length of the file `patch` makes, from its header.
///
/// # Errors
/// [`DeltaError::NotAPatch`] or [`DeltaError::Malformed`].
pub fn patched_length(patch: &[u8]) -> Result<u64, DeltaError> {
    if patch.len() < HEADER_LEN || &patch[..8] != MAGIC {
        return Err(DeltaError::NotAPatch);
    }
    read_size(eight(patch, 24), "negative new length")
}

/// Applies `patch` to `base`, writing the new file to `out`; `expected_len` is the new file's
/// length from signed metadata. Memory stays at the two bzip2 decoders, one zstd window of at
/// most 2^[`MAX_WINDOW_LOG`] bytes and a 64 KiB buffer, whatever the patch says.
///
/// # Errors
/// Any [`DeltaError`]; `out` may then hold a prefix of a wrong file, so write to a staging
/// file and check the result's digest before using it.
pub fn apply_patch(
    base: &[u8],
    patch: &[u8],
    expected_len: u64,
    mut out: impl Write,
) -> Result<(), DeltaError> {
    let new_len = patched_length(patch)?;
    if new_len != expected_len {
        return Err(DeltaError::WrongLength {
            patch: new_len,
            expected: expected_len,
        });
    }
    let control_len = read_size(eight(patch, 8), "negative control length")?;
    let diff_len = read_size(eight(patch, 16), "negative diff length")?;
    let control_end = usize::try_from(control_len)
        .ok()
        .and_then(|len| HEADER_LEN.checked_add(len))
        .ok_or(DeltaError::Malformed("control stream length"))?;
    let diff_end = usize::try_from(diff_len)
        .ok()
        .and_then(|len| control_end.checked_add(len))
        .filter(|end| *end <= patch.len())
        .ok_or(DeltaError::Malformed("stream lengths past the patch's end"))?;
    let mut control = bzip2::read::BzDecoder::new(&patch[HEADER_LEN..control_end]);
    let mut diff = bzip2::read::BzDecoder::new(&patch[control_end..diff_end]);
    let mut extra = zstd::stream::read::Decoder::new(&patch[diff_end..])?;
    extra.window_log_max(MAX_WINDOW_LOG)?;

    let mut position = 0usize;
    let mut written = 0u64;
    let mut idle = 0u32;
    let mut buffer = vec![0u8; CHUNK];
    while written < new_len {
        let mut triple = [0u8; 24];
        control
            .read_exact(&mut triple)
            .map_err(|_| DeltaError::Malformed("control stream ends early"))?;
        let add = read_size(eight(&triple, 0), "negative add length")?;
        let copy = read_size(eight(&triple, 8), "negative copy length")?;
        let seek = read_offset(eight(&triple, 16));
        let step = add
            .checked_add(copy)
            .filter(|step| *step <= new_len - written)
            .ok_or(DeltaError::Malformed("writes past the new length"))?;
        idle = if step == 0 { idle + 1 } else { 0 };
        if idle > MAX_IDLE_CONTROLS {
            return Err(DeltaError::Malformed("controls make no progress"));
        }
        let add = usize::try_from(add).map_err(|_| DeltaError::Malformed("add length"))?;
        let source = position
            .checked_add(add)
            .and_then(|end| base.get(position..end))
            .ok_or(DeltaError::Malformed("reads past the base"))?;
        for chunk in source.chunks(CHUNK) {
            let bytes = &mut buffer[..chunk.len()];
            diff.read_exact(bytes)
                .map_err(|_| DeltaError::Malformed("diff stream ends early"))?;
            for (byte, old) in bytes.iter_mut().zip(chunk) {
                *byte = byte.wrapping_add(*old);
            }
            out.write_all(bytes)?;
        }
        if io::copy(&mut (&mut extra).take(copy), &mut out)? != copy {
            return Err(DeltaError::Malformed("extra stream ends early"));
        }
        written += step;
        position = i64::try_from(position + add)
            .ok()
            .and_then(|at| at.checked_add(seek))
            .and_then(|at| usize::try_from(at).ok())
            .filter(|at| *at <= base.len())
            .ok_or(DeltaError::Malformed("seeks outside the base"))?;
    }
    out.flush()?;
    Ok(())
}
