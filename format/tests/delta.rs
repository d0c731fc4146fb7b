//! The bounded patch applier against hand-made patches: a valid one, and each way a hostile
//! or damaged patch is refused instead of writing past the signed length, reading outside the
//! base, or spinning.

use std::io::Write as _;

use plugstore_format::delta::{DeltaError, MAGIC, apply_patch, patched_length};

fn offset(value: i64) -> [u8; 8] {
    let magnitude = value.unsigned_abs();
    let raw = if value < 0 {
        magnitude | (1 << 63)
    } else {
        magnitude
    };
    raw.to_le_bytes()
}

fn bzip2(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A patch from its parts: controls (add, copy, seek), diff bytes, extra bytes, new length.
fn patch(controls: &[(i64, i64, i64)], diff: &[u8], extra: &[u8], new_len: i64) -> Vec<u8> {
    let control: Vec<u8> = controls
        .iter()
        .flat_map(|(add, copy, seek)| [offset(*add), offset(*copy), offset(*seek)].concat())
        .collect();
    let control = bzip2(&control);
    let diff = bzip2(diff);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&offset(control.len() as i64));
    out.extend_from_slice(&offset(diff.len() as i64));
    out.extend_from_slice(&offset(new_len));
    out.extend_from_slice(&control);
    out.extend_from_slice(&diff);
    out.extend_from_slice(&zstd::encode_all(extra, 19).unwrap());
    out
}

const BASE: &[u8] = b"hello world";

/// "hello world" → "hello there": 6 bytes from the base (diff zero), then " there"… as extra.
fn good() -> Vec<u8> {
    patch(&[(6, 5, 0)], &[0; 6], b"there", 11)
}

fn apply(patch: &[u8], len: u64) -> Result<Vec<u8>, DeltaError> {
    let mut out = Vec::new();
    apply_patch(BASE, patch, len, &mut out).map(|()| out)
}

#[test]
fn a_valid_patch_rebuilds_the_new_file() {
    assert_eq!(patched_length(&good()).unwrap(), 11);
    assert_eq!(apply(&good(), 11).unwrap(), b"hello there");
    // The diff stream is added to the base byte by byte.
    let shifted = patch(&[(5, 0, 0)], &[1; 5], b"", 5);
    assert_eq!(apply(&shifted, 5).unwrap(), b"ifmmp");
}

#[test]
fn a_patch_for_another_length_is_refused() {
    assert!(matches!(
        apply(&good(), 12),
        Err(DeltaError::WrongLength {
            patch: 11,
            expected: 12
        })
    ));
}

#[test]
fn not_a_patch() {
    assert!(matches!(apply(b"BSDIFF40", 11), Err(DeltaError::NotAPatch)));
    let mut wrong_magic = good();
    wrong_magic[..8].copy_from_slice(b"BSDIFF40");
    assert!(matches!(
        apply(&wrong_magic, 11),
        Err(DeltaError::NotAPatch)
    ));
}

#[test]
fn stream_lengths_beyond_the_patch_or_negative_are_refused() {
    let mut huge = good();
    huge[8..16].copy_from_slice(&offset(i64::MAX));
    assert!(matches!(apply(&huge, 11), Err(DeltaError::Malformed(_))));
    let mut negative = good();
    negative[16..24].copy_from_slice(&offset(-1));
    assert!(matches!(
        apply(&negative, 11),
        Err(DeltaError::Malformed(_))
    ));
    let good = good();
    assert!(apply(&good[..good.len() - 3], 11).is_err(), "truncated");
}

#[test]
fn writing_past_the_length_reading_past_the_base_or_seeking_out_is_refused() {
    // add + copy larger than the new length.
    let long = patch(&[(6, 100, 0)], &[0; 6], b"there", 11);
    assert!(matches!(apply(&long, 11), Err(DeltaError::Malformed(_))));
    // add past the end of the base.
    let past = patch(&[(20, 0, 0)], &[0; 20], b"", 20);
    assert!(matches!(apply(&past, 20), Err(DeltaError::Malformed(_))));
    // seek before the start of the base.
    let before = patch(&[(1, 0, -5), (1, 0, 0)], &[0; 2], b"", 2);
    assert!(matches!(apply(&before, 2), Err(DeltaError::Malformed(_))));
}

#[test]
fn controls_that_make_no_progress_are_refused() {
    let spin = patch(&[(0, 0, 1), (0, 0, 1), (0, 0, 1), (1, 0, 0)], &[0], b"", 1);
    assert!(matches!(apply(&spin, 1), Err(DeltaError::Malformed(_))));
}

#[test]
fn a_stream_that_ends_early_is_refused() {
    let short_extra = patch(&[(6, 5, 0)], &[0; 6], b"the", 11);
    assert!(matches!(
        apply(&short_extra, 11),
        Err(DeltaError::Malformed(_))
    ));
    let short_control = patch(&[(6, 0, 0)], &[0; 6], b"", 11);
    assert!(matches!(
        apply(&short_control, 11),
        Err(DeltaError::Malformed(_))
    ));
}
