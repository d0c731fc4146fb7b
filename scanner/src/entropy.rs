//! Shannon entropy of byte strings, the classic sign of compressed or encrypted content.

/// Shannon entropy of `bytes` in bits per byte, from 0 (one repeated byte) to 8 (uniformly
/// random); 0 for an empty slice.
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = count as f64 / total;
            -p * p.log2()
        })
        .sum()
}

/// Rounds an entropy (or any ratio) to three decimals for metrics.
pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(&[7; 1000]), 0.0);
        assert!((shannon_entropy(b"abab") - 1.0).abs() < 1e-12);
        let all: Vec<u8> = (0..=255).collect();
        assert!((shannon_entropy(&all) - 8.0).abs() < 1e-12);
        assert_eq!(round3(7.123_456), 7.123);
    }
}
