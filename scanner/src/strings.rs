//! Indicators in embedded data: URLs, IP addresses, domain names, base64 and hex blobs, keys.
//!
//! The patterns run directly over the data (no copy, no prior string extraction) with the
//! `regex` crate's byte-oriented, ASCII-only engines, which scan binary data in linear time.
//! Each candidate then passes a cheap check that removes the usual false positives of
//! binaries (alphabet tables, version numbers, hashes).

use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::entropy::shannon_entropy;
use crate::limits::{MIN_STRING_RUN, StaticLimits};

/// What an indicator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndicatorKind {
    /// `scheme://…`.
    Url,
    /// A dotted-quad IPv4 address outside any URL.
    Ipv4 {
        /// Whether it is publicly routable (not private, loopback, link-local, shared,
        /// documentation, multicast, broadcast or unspecified).
        public: bool,
    },
    /// A domain name with a common top-level domain, outside any URL.
    Domain,
    /// A long base64 run.
    Base64,
    /// A long hexadecimal run.
    Hex,
    /// A PEM private key header.
    PrivateKey,
    /// An access key of a known service.
    AccessKey,
}

/// One indicator found in a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indicator {
    /// What it is.
    pub kind: IndicatorKind,
    /// Where it is in the buffer.
    pub range: Range<usize>,
}

/// Compiles one of this module's constant patterns.
fn pattern(source: &str) -> Regex {
    match Regex::new(source) {
        Ok(regex) => regex,
        // The patterns are constants covered by the tests; this cannot happen at run time.
        Err(error) => panic!("invalid built-in pattern {source:?}: {error}"),
    }
}

static URL: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"(?i-u)\b[a-z][a-z0-9+.\-]{1,15}://[a-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]{2,}")
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?-u)(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    )
});
/// A dot and a top-level domain that is common in real addresses and rare as the last part
/// of a dotted identifier (`log.info`, `stack.top` and `self.me` are code, not hosts). The
/// labels before it are collected by hand: a pattern that starts with them would have to be
/// tried at every letter of the data, while this one starts at a literal.
static TLD: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"(?i-u)\.(?:com|net|org|io|ru|cn|su|biz|xyz|onion|tk|pw|cc|uk|jp|ir|kp)\b")
});
static PRIVATE_KEY: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?-u)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"));
static ACCESS_KEY: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r"(?-u)\b(?:",
        r"(?:AKIA|ASIA)[0-9A-Z]{16}",         // AWS access key id
        r"|gh[pousr]_[A-Za-z0-9]{36}",        // GitHub tokens
        r"|github_pat_[A-Za-z0-9_]{22,255}",  // GitHub fine-grained tokens
        r"|xox[abprs]-[A-Za-z0-9\-]{10,128}", // Slack tokens
        r"|AIza[0-9A-Za-z_\-]{35}",           // Google API keys
        r"|sk_live_[0-9A-Za-z]{24,128}",      // Stripe secret keys
        r")\b",
    ))
});

/// Shortest access key [`ACCESS_KEY`] matches (`AKIA` and 16 characters).
const MIN_ACCESS_KEY_LEN: usize = 20;

/// Shortest text searched: every indicator is at least this long (`1.2.3.4` is 7 bytes,
/// `ab.io` 5), and skipping shorter runs keeps binary data cheap.
const MIN_TEXT_RUN: usize = 5;

/// Bytes that can be part of an indicator's text run: printable ASCII and line breaks.
const fn text_bytes() -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0x20;
    while byte < 0x7f {
        table[byte] = true;
        byte += 1;
    }
    table[b'\t' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table
}
static TEXT_BYTES: [bool; 256] = text_bytes();

/// Reports every indicator in `data` to `sink`.
///
/// Every pattern is printable ASCII, so the search runs only over maximal runs of text bytes;
/// binary data (code tables, images, compressed blobs) costs one table lookup per byte.
/// Within a run, indicators come kind by kind, each kind in order of position.
pub fn find_indicators(data: &[u8], limits: &StaticLimits, mut sink: impl FnMut(Indicator)) {
    let mut search = |run: Range<usize>| {
        find_in_text(&data[run.clone()], limits, &mut |indicator: Indicator| {
            sink(Indicator {
                kind: indicator.kind,
                range: indicator.range.start + run.start..indicator.range.end + run.start,
            });
        });
    };
    // Length of the text run ending here, kept without a data-dependent branch: in binary
    // data text and non-text bytes alternate unpredictably, and only the rare long runs
    // need attention.
    let mut length = 0usize;
    for (at, &byte) in data.iter().enumerate() {
        let text = usize::from(TEXT_BYTES[usize::from(byte)]);
        if length >= MIN_TEXT_RUN && text == 0 {
            search(at - length..at);
        }
        length = (length + 1) * text;
    }
    if length >= MIN_TEXT_RUN {
        search(data.len() - length..data.len());
    }
}

/// [`find_indicators`] on one run of text.
fn find_in_text(data: &[u8], limits: &StaticLimits, sink: &mut impl FnMut(Indicator)) {
    // Most runs in binary data are short and hold none of the punctuation the patterns need;
    // one look at the bytes saves starting five searches on each.
    let (mut colon, mut dot, mut dash) = (false, false, false);
    for &byte in data {
        match byte {
            b':' => colon = true,
            b'.' => dot = true,
            b'-' => dash = true,
            _ => {}
        }
    }
    let mut urls: Vec<Range<usize>> = Vec::new();
    let url_matches = colon.then(|| URL.find_iter(data)).into_iter().flatten();
    for found in url_matches {
        let text = found.as_bytes();
        let after_scheme = text
            .windows(3)
            .position(|window| window == b"://")
            .map_or(text.len(), |at| at + 3);
        if text[after_scheme..].iter().any(u8::is_ascii_alphanumeric) {
            urls.push(found.range());
            sink(Indicator {
                kind: IndicatorKind::Url,
                range: found.range(),
            });
        }
    }
    let in_url = |range: &Range<usize>| {
        let at = urls.partition_point(|url| url.end <= range.start);
        urls.get(at).is_some_and(|url| url.start <= range.start)
    };

    for found in dot.then(|| IPV4.find_iter(data)).into_iter().flatten() {
        let range = found.range();
        if in_url(&range) || !ipv4_is_delimited(data, &range) {
            continue;
        }
        let Some(address) = parse_ipv4(found.as_bytes()) else {
            continue;
        };
        if address.is_unspecified() {
            continue;
        }
        sink(Indicator {
            kind: IndicatorKind::Ipv4 {
                public: is_public(address),
            },
            range,
        });
    }

    let mut pending: Option<Range<usize>> = None;
    let mut names = DomainNames::default();
    for found in dot.then(|| TLD.find_iter(data)).into_iter().flatten() {
        let Some(domain) = names.ending_at(data, found.start(), found.end()) else {
            continue;
        };
        if in_url(&domain) {
            continue;
        }
        // `a.com.evil.ru` hits `.com` and then `.ru`: keep the longer name only.
        match pending.take() {
            Some(previous) if domain.start <= previous.start => {}
            Some(previous) => sink(Indicator {
                kind: IndicatorKind::Domain,
                range: previous,
            }),
            None => {}
        }
        pending = Some(domain);
    }
    if let Some(domain) = pending {
        sink(Indicator {
            kind: IndicatorKind::Domain,
            range: domain,
        });
    }

    for found in dash
        .then(|| PRIVATE_KEY.find_iter(data))
        .into_iter()
        .flatten()
    {
        sink(Indicator {
            kind: IndicatorKind::PrivateKey,
            range: found.range(),
        });
    }
    let long_enough = data.len() >= MIN_ACCESS_KEY_LEN;
    for found in long_enough
        .then(|| ACCESS_KEY.find_iter(data))
        .into_iter()
        .flatten()
    {
        sink(Indicator {
            kind: IndicatorKind::AccessKey,
            range: found.range(),
        });
    }

    if data.len() >= MIN_STRING_RUN {
        encoded_runs(data, limits, sink);
    }
}

/// Long base64 and hex runs. Both are maximal runs of the base64 alphabet, found with one
/// table lookup per byte; a hex value is such a run, or a `+`/`/`-separated piece of one,
/// made of hex digits only.
fn encoded_runs(data: &[u8], limits: &StaticLimits, sink: &mut impl FnMut(Indicator)) {
    let min_base64 = limits.min_base64_len.max(MIN_STRING_RUN);
    let min_hex = limits.min_hex_len.max(MIN_STRING_RUN);
    let mut at = 0;
    while at < data.len() {
        if !BASE64_BYTES[usize::from(data[at])] {
            at += 1;
            continue;
        }
        let start = at;
        while at < data.len() && BASE64_BYTES[usize::from(data[at])] {
            at += 1;
        }
        let run = start..at;
        if run.len() < MIN_STRING_RUN {
            continue;
        }
        let padding = data[at..]
            .iter()
            .take(2)
            .take_while(|&&b| b == b'=')
            .count();
        let padded = start..at + padding;
        if run.len() >= min_base64 && looks_like_base64(&data[padded.clone()]) {
            sink(Indicator {
                kind: IndicatorKind::Base64,
                range: padded,
            });
        }
        let mut piece_start = start;
        for end in (start..=run.end).filter(|&i| i == run.end || matches!(data[i], b'+' | b'/')) {
            let piece = &data[piece_start..end];
            if piece.len() >= min_hex
                && piece.iter().all(u8::is_ascii_hexdigit)
                && looks_like_hex_value(piece)
            {
                sink(Indicator {
                    kind: IndicatorKind::Hex,
                    range: piece_start..end,
                });
            }
            piece_start = end + 1;
        }
    }
}

/// The base64 alphabet, without padding.
const fn base64_bytes() -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
        byte += 1;
    }
    table
}
static BASE64_BYTES: [bool; 256] = base64_bytes();

/// The domain names before top-level domains, found one top-level domain after the other in
/// order of position.
///
/// A name is the longest run of valid labels before its top-level domain, so in a long dotted
/// run (`a.com.com.com…`, which a hostile upload can make megabytes long) every top-level
/// domain has nearly the same run before it. Walking each run anew would cost the square of
/// the run's length; a walk that reaches the previous top-level domain takes its answer
/// instead, and all the walks of a text together step over each byte once.
#[derive(Default)]
struct DomainNames {
    /// The previous top-level domain's start, and where its name starts (`None`: it has none).
    previous: Option<(usize, Option<usize>)>,
}

impl DomainNames {
    /// The domain name whose top-level domain (with its dot) is `tld_start..end`: the longest
    /// run of valid labels before it, if there is at least one. A run longer than a DNS name
    /// can be (253 bytes) is reported whole too: no resolver takes it, but a program can look
    /// up any tail of it, so it is left to a reviewer.
    fn ending_at(&mut self, data: &[u8], tld_start: usize, end: usize) -> Option<Range<usize>> {
        let start = self.start_of_name(data, tld_start);
        self.previous = Some((tld_start, start));
        start.map(|start| start..end)
    }

    fn start_of_name(&self, data: &[u8], tld_start: usize) -> Option<usize> {
        let mut start = tld_start;
        let mut label_end = tld_start;
        let mut labels = 0;
        loop {
            if let Some((previous_tld, previous_start)) = self.previous
                && previous_tld == label_end
            {
                // From here this walk goes on exactly as the previous one did: its valid
                // labels are ours too, and if its first label is invalid, it has no name and
                // ours would start right after a dot, which makes no name either.
                return previous_start;
            }
            let mut label_start = label_end;
            while label_start > 0
                && (data[label_start - 1].is_ascii_alphanumeric() || data[label_start - 1] == b'-')
            {
                label_start -= 1;
            }
            #[cfg(test)]
            tests::count_domain_walk_steps(label_end - label_start + 1);
            let label = &data[label_start..label_end];
            if label.is_empty()
                || label.len() > 63
                || label.starts_with(b"-")
                || label.ends_with(b"-")
            {
                break;
            }
            labels += 1;
            start = label_start;
            if label_start == 0 || data[label_start - 1] != b'.' {
                break;
            }
            label_end = label_start - 1;
        }
        // A name glued to an identifier (`my_host.com`) or a path component is not a host.
        let before = start.checked_sub(1).map(|at| data[at]);
        (labels > 0 && !matches!(before, Some(b'_' | b'-' | b'.'))).then_some(start)
    }
}

/// Not part of a longer dotted number (`1.2.3.4.5`, `11.2.3.4` cut at the front).
fn ipv4_is_delimited(data: &[u8], range: &Range<usize>) -> bool {
    let before = range.start.checked_sub(1).and_then(|at| data.get(at));
    if before.is_some_and(|&b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    match data.get(range.end) {
        Some(b) if b.is_ascii_digit() => false,
        Some(b'.') => !data.get(range.end + 1).is_some_and(u8::is_ascii_digit),
        _ => true,
    }
}

fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn is_public(address: Ipv4Addr) -> bool {
    let [a, b, ..] = address.octets();
    let shared = a == 100 && (64..128).contains(&b);
    !(address.is_private()
        || address.is_loopback()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_documentation()
        || address.is_multicast()
        || address.is_unspecified()
        || shared
        || a == 0
        || a >= 240)
}

/// A base64 run that looks like encoded data: mixed classes, high entropy, not an alphabet
/// table, and not hex (which has its own rule).
fn looks_like_base64(run: &[u8]) -> bool {
    let body = run
        .strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run);
    let upper = body.iter().any(u8::is_ascii_uppercase);
    let lower = body.iter().any(u8::is_ascii_lowercase);
    let digit = body.iter().any(u8::is_ascii_digit);
    let hex = body.iter().all(u8::is_ascii_hexdigit);
    upper
        && lower
        && digit
        && !hex
        && !contains(body, b"ABCDEFGHIJKLMNOP")
        && !contains(body, b"abcdefghijklmnop")
        && shannon_entropy(body) >= 4.5
}

/// A hex run that looks like a value (a key, a digest) rather than a digit table.
fn looks_like_hex_value(run: &[u8]) -> bool {
    run.iter().any(u8::is_ascii_digit)
        && run.iter().any(u8::is_ascii_alphabetic)
        && !contains(&run.to_ascii_lowercase(), b"0123456789abcdef")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Bytes [`DomainNames`] has stepped over on this thread: its cost, which timings on
        /// a shared machine could not show reliably.
        static DOMAIN_WALK_STEPS: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn count_domain_walk_steps(bytes: usize) {
        DOMAIN_WALK_STEPS.with(|steps| steps.set(steps.get() + bytes));
    }

    fn domain_walk_steps(run: impl FnOnce()) -> usize {
        DOMAIN_WALK_STEPS.with(|steps| steps.set(0));
        run();
        DOMAIN_WALK_STEPS.with(Cell::get)
    }

    fn found(data: &[u8]) -> Vec<(IndicatorKind, String)> {
        let mut out = Vec::new();
        find_indicators(data, &StaticLimits::default(), |indicator| {
            out.push((
                indicator.kind,
                String::from_utf8_lossy(&data[indicator.range]).into_owned(),
            ));
        });
        out
    }

    #[test]
    fn patterns_compile() {
        for regex in [&URL, &IPV4, &TLD, &PRIVATE_KEY, &ACCESS_KEY] {
            assert!(!regex.as_str().is_empty());
        }
    }

    #[test]
    fn urls_hide_the_hosts_inside_them() {
        let data =
            b"\0\x01GET https://evil.example.com/x?y=1\0stratum+tcp://pool.minexmr.com:4444\0";
        assert_eq!(
            found(data),
            [
                (IndicatorKind::Url, "https://evil.example.com/x?y=1".into()),
                (
                    IndicatorKind::Url,
                    "stratum+tcp://pool.minexmr.com:4444".into()
                ),
            ]
        );
        assert_eq!(found(b"file:///\0"), []);
    }

    #[test]
    fn ipv4_addresses_are_delimited_and_classified() {
        let data = b"a 8.8.4.4, 10.0.0.1 and 127.0.0.1. 1.2.3.4.5 300.1.1.1 v11.22.33.44x";
        assert_eq!(
            found(data),
            [
                (IndicatorKind::Ipv4 { public: true }, "8.8.4.4".into()),
                (IndicatorKind::Ipv4 { public: false }, "10.0.0.1".into()),
                (IndicatorKind::Ipv4 { public: false }, "127.0.0.1".into()),
                (IndicatorKind::Ipv4 { public: true }, "11.22.33.44".into()),
            ]
        );
    }

    #[test]
    fn domains_need_a_common_tld() {
        assert_eq!(
            found(b"c2.badguy.ru\0log.info\0x.rs\0github.com/evanw\0"),
            [
                (IndicatorKind::Domain, "c2.badguy.ru".into()),
                (IndicatorKind::Domain, "github.com".into()),
            ]
        );
    }

    #[test]
    fn keys_and_blobs() {
        let key = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n";
        assert_eq!(
            found(key),
            [(
                IndicatorKind::PrivateKey,
                "-----BEGIN RSA PRIVATE KEY-----".into()
            )]
        );
        assert_eq!(
            found(b"id=AKIAIOSFODNN7EXAMPLE;"),
            [(IndicatorKind::AccessKey, "AKIAIOSFODNN7EXAMPLE".into())]
        );
        let blob = b"TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuIFRoZSBxdWljayBicm93biBmb3gganVtcHMgb3ZlciAxMyBsYXp5IGRvZ3M=";
        assert_eq!(
            found(blob),
            [(IndicatorKind::Base64, String::from_utf8_lossy(blob).into())]
        );
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        assert_eq!(found(alphabet), []);
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(found(hex.as_bytes()), [(IndicatorKind::Hex, hex.into())]);
        // A 40-digit commit id is too short.
        assert_eq!(
            found(b"/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/"),
            []
        );
    }

    /// The walk [`DomainNames`] replaces, one top-level domain at a time: the reference its
    /// answers must match.
    fn domain_by_walking_back(data: &[u8], tld_start: usize, end: usize) -> Option<Range<usize>> {
        let mut start = tld_start;
        let mut label_end = tld_start;
        let mut labels = 0;
        loop {
            let mut label_start = label_end;
            while label_start > 0
                && (data[label_start - 1].is_ascii_alphanumeric() || data[label_start - 1] == b'-')
            {
                label_start -= 1;
            }
            let label = &data[label_start..label_end];
            if label.is_empty()
                || label.len() > 63
                || label.starts_with(b"-")
                || label.ends_with(b"-")
            {
                break;
            }
            labels += 1;
            start = label_start;
            if label_start == 0 || data[label_start - 1] != b'.' {
                break;
            }
            label_end = label_start - 1;
        }
        let before = start.checked_sub(1).map(|at| data[at]);
        (labels > 0 && !matches!(before, Some(b'_' | b'-' | b'.'))).then_some(start..end)
    }

    #[test]
    fn domain_names_are_those_of_the_walk_back_from_each_tld() {
        // Texts of the bytes that matter to labels, from a fixed-seed generator so that a
        // failure can be replayed: long labels, dashes, underscores, empty labels, and
        // top-level domains in runs.
        const PIECES: [&[u8]; 11] = [
            b"a", b"b7", b"-", b"_", b".", b".", b".com", b".io", b".ru", b" ", b"x-y",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut compared = 0;
        for _ in 0..2000 {
            let mut data = Vec::new();
            while data.len() < 400 {
                let piece = PIECES[(next() % PIECES.len() as u64) as usize];
                let repeat = if next() % 16 == 0 { 70 } else { 1 };
                for _ in 0..repeat {
                    data.extend_from_slice(piece);
                }
            }
            let mut names = DomainNames::default();
            for found in TLD.find_iter(&data) {
                assert_eq!(
                    names.ending_at(&data, found.start(), found.end()),
                    domain_by_walking_back(&data, found.start(), found.end()),
                    "at {:?} in {:?}",
                    found.range(),
                    String::from_utf8_lossy(&data)
                );
                compared += 1;
            }
        }
        assert!(
            compared > 10_000,
            "only {compared} top-level domains compared"
        );
    }

    #[test]
    fn a_long_dotted_run_is_walked_once() {
        // 64 KiB of `a.com.com…`: walking back from each `.com` anew steps over 500 million
        // bytes; remembering the previous walk, over each byte once.
        let mut data = b"a".to_vec();
        while data.len() < 64 << 10 {
            data.extend_from_slice(b".com");
        }
        let mut domains = Vec::new();
        let steps = domain_walk_steps(|| {
            find_indicators(&data, &StaticLimits::default(), |indicator| {
                domains.push(indicator);
            });
        });
        assert!(
            steps <= 2 * data.len(),
            "{steps} steps for {} bytes",
            data.len()
        );
        assert_eq!(
            domains,
            [Indicator {
                kind: IndicatorKind::Domain,
                range: 0..data.len()
            }]
        );
    }

    #[test]
    fn megabytes_of_top_level_domains_cost_one_pass() {
        // A 4 MiB upload of one dotted run, then a name: one name each, found by stepping over
        // each byte once (walking back from each of the 320 000 `.com` anew: 7 * 10^11
        // steps, hours).
        let mut data = b"c2".to_vec();
        while data.len() < 4 << 20 {
            data.extend_from_slice(b".cdn-edge.com");
        }
        let run = data.len();
        data.extend_from_slice(b" c2.evil.ru\0");
        let mut found = Vec::new();
        let steps = domain_walk_steps(|| {
            find_indicators(&data, &StaticLimits::default(), |indicator| {
                assert_eq!(indicator.kind, IndicatorKind::Domain);
                found.push(indicator.range);
            });
        });
        assert_eq!(found, [0..run, run + 1..data.len() - 1]);
        assert!(
            steps <= 2 * data.len(),
            "{steps} steps for {} bytes",
            data.len()
        );
    }
}
