//! Reading an update check's request cheaply: the store's hottest request is a 6 KB JSON body
//! listing dozens of plugins, and reading it with serde_json was the largest part of a
//! check's CPU time (ADR 0005).
//!
//! [`read_usual_check`] recognises the shape hosts send (objects of strings, whitespace
//! anywhere, keys in any order) and gives up on everything else (escapes, unknown keys,
//! `null`, duplicates, anything malformed), for serde_json to read and explain. It only ever
//! answers what serde_json would: the tests compare the two on every variant and corruption
//! of a request they can make.

use std::borrow::Cow;

use semver::Version;

use crate::controllers::updates::{HostApp, InstalledPlugin, UpdateCheckRequest};

/// Reads `text` when it is an update check in the usual shape; `None` for anything else.
pub fn read_usual_check(text: &str) -> Option<UpdateCheckRequest<'_>> {
    let mut reader = Reader { text, at: 0 };
    let request = reader.request()?;
    reader.skip_whitespace();
    (reader.at == text.len()).then_some(request)
}

/// `MAJOR.MINOR.PATCH` and nothing more (no pre-release, build or leading zero), read without
/// semver's general parser; `None` for anything else, which semver then reads.
pub fn plain_release(text: &str) -> Option<Version> {
    // 19 digits always fit in a u64; longer numbers are semver's to judge.
    const MAX_DIGITS: u32 = 19;
    let mut numbers = [0u64; 3];
    let mut part = 0;
    let mut digits = 0;
    for &byte in text.as_bytes() {
        if byte == b'.' {
            if digits == 0 || part == 2 {
                return None;
            }
            part += 1;
            digits = 0;
            continue;
        }
        let digit = byte.wrapping_sub(b'0');
        let leading_zero = digits == 1 && numbers[part] == 0;
        if digit >= 10 || digits == MAX_DIGITS || leading_zero {
            return None;
        }
        numbers[part] = numbers[part] * 10 + u64::from(digit);
        digits += 1;
    }
    (part == 2 && digits > 0).then(|| Version::new(numbers[0], numbers[1], numbers[2]))
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        // Compact JSON has none: one comparison decides.
        while let Some(&byte) = bytes.get(self.at)
            && byte <= b' '
            && matches!(byte, b' ' | b'\n' | b'\r' | b'\t')
        {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_whitespace();
        let byte = *self.text.as_bytes().get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// Consumes `close` when it comes next (after whitespace): an empty object or array.
    fn closes_at_once(&mut self, close: u8) -> bool {
        self.skip_whitespace();
        let closes = self.text.as_bytes().get(self.at) == Some(&close);
        if closes {
            self.at += 1;
        }
        closes
    }

    /// A string with no escapes and no control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let end = start + string_length(self.text.as_bytes().get(start..)?)?;
        self.at = end + 1;
        // The quotes are ASCII, so the slice is whole characters of valid UTF-8.
        self.text.get(start..end)
    }

    /// An object; `member` reads the value of each key.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.closes_at_once(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(self, key)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn request(&mut self) -> Option<UpdateCheckRequest<'a>> {
        let (mut host, mut channel, mut install_id, mut installed) = (None, None, None, None);
        self.object(|reader, key| match key {
            "host" => once(&mut host, reader.host()?),
            "channel" => once(&mut channel, reader.string()?),
            "install_id" => once(&mut install_id, reader.string()?),
            "installed" => once(&mut installed, reader.installed()?),
            _ => None,
        })?;
        Some(UpdateCheckRequest {
            host: host?,
            channel: channel.map(Cow::Borrowed),
            install_id: Cow::Borrowed(install_id?),
            installed: installed?,
        })
    }

    fn host(&mut self) -> Option<HostApp<'a>> {
        let [app_id, version, platform] = self.string_members(|key| match key {
            "app_id" => Some(0),
            "version" => Some(1),
            "platform" => Some(2),
            _ => None,
        })?;
        Some(HostApp {
            app_id: Cow::Borrowed(app_id),
            version: Cow::Borrowed(version),
            platform: Cow::Borrowed(platform),
        })
    }

    /// An object of `N` string members, each once, in any order; `slot` numbers their keys
    /// (a `match`, which the compiler turns into a switch on the length).
    fn string_members<const N: usize>(
        &mut self,
        slot: impl Fn(&str) -> Option<usize>,
    ) -> Option<[&'a str; N]> {
        let mut values = [None; N];
        self.object(|reader, key| once(values.get_mut(slot(key)?)?, reader.string()?))?;
        if values.iter().any(Option::is_none) {
            return None;
        }
        Some(values.map(Option::unwrap_or_default))
    }

    fn installed(&mut self) -> Option<Vec<InstalledPlugin<'a>>> {
        self.expect(b'[')?;
        // Hosts usually list dozens; growing from empty would copy the list six times.
        let mut installed = Vec::with_capacity(64);
        if self.closes_at_once(b']') {
            return Some(installed);
        }
        loop {
            let [id, version, sha256] = self.string_members(|key| match key {
                "id" => Some(0),
                "version" => Some(1),
                "sha256" => Some(2),
                _ => None,
            })?;
            installed.push(InstalledPlugin {
                id: Cow::Borrowed(id),
                version: Cow::Borrowed(version),
                sha256: Cow::Borrowed(sha256),
            });
            match self.next()? {
                b',' => {}
                b']' => return Some(installed),
                _ => return None,
            }
        }
    }
}

/// Fills `slot`, refusing a second value (serde_json reports a duplicate field).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// The bytes of `rest` before its closing quote; `None` when an escape or a control character
/// comes first, or no quote at all.
///
/// Eight bytes at a time (the usual string is a 64-digit hex digest): each byte below `n` gets
/// its high bit set, exactly for the first such byte, which is the only one read. Bytes past
/// the closing quote are read but never matter.
fn string_length(rest: &[u8]) -> Option<usize> {
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH_BITS;
    let mut at = 0;
    while let Some(chunk) = rest.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let special = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if special != 0 {
            let at = at + (special.trailing_zeros() / 8) as usize;
            return (rest[at] == b'"').then_some(at);
        }
        at += 8;
    }
    let tail = rest.get(at..)?;
    let end = tail
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
    (tail[end] == b'"').then_some(at + end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn usual_body(plugins: usize) -> String {
        let installed: Vec<String> = (0..plugins)
            .map(|i| {
                format!(r#"{{"id":"acme/plugin-{i}","version":"1.{i}.0","sha256":"{DIGEST}"}}"#)
            })
            .collect();
        format!(
            r#"{{"host":{{"app_id":"org.example.host","version":"2.0.0","platform":"linux-x86_64"}},"channel":"stable","install_id":"install-0001","installed":[{}]}}"#,
            installed.join(",")
        )
    }

    fn serde_reads(text: &str) -> Option<UpdateCheckRequest<'_>> {
        serde_json::from_str(text).ok()
    }

    /// The one rule: whatever the reader answers, serde_json answers the same.
    fn assert_agrees(text: &str) -> bool {
        match read_usual_check(text) {
            Some(read) => {
                assert_eq!(Some(read), serde_reads(text), "for {text:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_usual_shape_is_read_compact_pretty_and_in_any_key_order() {
        let compact = usual_body(3);
        assert!(assert_agrees(&compact));
        let value: serde_json::Value = serde_json::from_str(&compact).unwrap();
        assert!(assert_agrees(
            &serde_json::to_string_pretty(&value).unwrap()
        ));
        let reordered = r#" { "installed" : [ { "sha256" : "abc" , "version" : "1.0.0" , "id" : "a/b" } ] ,
            "install_id":"x", "host":{"platform":"p","version":"v","app_id":"a"} } "#;
        assert!(assert_agrees(reordered));
        let no_channel = compact.replace(r#""channel":"stable","#, "");
        assert!(assert_agrees(&no_channel));
        let none_installed = usual_body(0);
        assert!(assert_agrees(&none_installed));
        let read = read_usual_check(&compact).unwrap();
        assert_eq!(read.installed.len(), 3);
        assert_eq!(read.installed[2].id, "acme/plugin-2");
        assert_eq!(read.channel.as_deref(), Some("stable"));
    }

    #[test]
    fn anything_unusual_is_left_to_serde_json() {
        let compact = usual_body(2);
        let unusual = [
            // Escapes, even of plain characters, and control characters.
            compact.replace("acme/plugin-1", r"acme\/plugin-1"),
            compact.replace("acme/plugin-1", r"acme/plugin-\u0031"),
            compact.replace("org.example", "org\texample"),
            compact.replace("stable", "sta\u{1}ble"),
            // Unknown keys, nulls, other types, duplicates, missing fields.
            compact.replace(r#""channel":"stable""#, r#""channel":"stable","extra":1"#),
            compact.replace(r#""channel":"stable""#, r#""channel":null"#),
            compact.replace(r#""version":"1.0.0""#, r#""version":100"#),
            compact.replace(
                r#""channel":"stable""#,
                r#""channel":"stable","channel":"beta""#,
            ),
            compact.replace(r#","install_id":"install-0001""#, ""),
            compact.replace(r#""id":"acme/plugin-0","#, ""),
            // A struct written as an array, trailing text, a byte-order mark.
            r#"[{"app_id":"a","version":"1.0.0","platform":"p"},"stable","abcdefgh",[]]"#.into(),
            format!("{compact} x"),
            format!("\u{feff}{compact}"),
        ];
        for text in &unusual {
            assert!(!assert_agrees(text), "the reader took {text:?}");
        }
    }

    #[test]
    fn every_truncation_and_single_byte_corruption_agrees_with_serde_json() {
        let body = usual_body(2);
        let replacements = b"\"\\{}[]:, \n\t\x01a0-/";
        let mut read = 0;
        for end in 0..body.len() {
            assert_agrees(&body[..end]);
        }
        for position in 0..body.len() {
            let mut without = body.clone().into_bytes();
            without.remove(position);
            if let Ok(text) = String::from_utf8(without) {
                assert_agrees(&text);
            }
            for &replacement in replacements {
                let mut corrupted = body.clone().into_bytes();
                corrupted[position] = replacement;
                let text = String::from_utf8(corrupted).unwrap();
                read += usize::from(assert_agrees(&text));
                let mut inserted = body.clone().into_bytes();
                inserted.insert(position, replacement);
                let text = String::from_utf8(inserted).unwrap();
                read += usize::from(assert_agrees(&text));
            }
        }
        // Many corruptions only change a string's text or add whitespace; the reader takes those.
        assert!(read > body.len(), "the reader took only {read} variants");
    }

    #[test]
    fn strings_end_at_the_first_quote_whatever_their_length() {
        for length in 0..40 {
            let content = "x".repeat(length);
            for tail in ["\"", "\"\"\"\"\"\"\"\"\"", "\"\\\u{1}"] {
                assert_eq!(
                    string_length(format!("{content}{tail}").as_bytes()),
                    Some(length)
                );
            }
            for bad in ["\\\"", "\u{1}\"", "\u{1f}\"", ""] {
                assert_eq!(string_length(format!("{content}{bad}").as_bytes()), None);
            }
            // Bytes at and above the control range, and non-ASCII, are content.
            let mixed = format!("{content} ~\u{7f}é\"");
            assert_eq!(string_length(mixed.as_bytes()), Some(mixed.len() - 1));
        }
    }

    #[test]
    fn plain_releases_are_read_as_semver_reads_them() {
        let alphabet = ['0', '1', '9', '.', '-', '+', 'a'];
        let mut texts = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..6 {
            texts = texts
                .iter()
                .flat_map(|text| alphabet.iter().map(move |c| format!("{text}{c}")))
                .collect();
            all.extend(texts.iter().cloned());
        }
        all.extend(
            [
                "9999999999999999999.0.0",
                "18446744073709551615.1.2",
                "18446744073709551616.1.2",
                "1.2.3 ",
                " 1.2.3",
                "1.2.3.4",
                "1.2",
                "01.2.3",
                "1.0.00",
                "10.20.30",
            ]
            .map(String::from),
        );
        let mut plain = 0;
        for text in &all {
            let by_semver = Version::parse(text).ok();
            match plain_release(text) {
                Some(version) => {
                    assert_eq!(Some(&version), by_semver.as_ref(), "{text:?}");
                    plain += 1;
                }
                None => {
                    // Only what semver refuses or reads as more than a plain release, and
                    // numbers too long for the fast path.
                    let long = text.split('.').any(|part| part.len() > 19);
                    assert!(
                        long || by_semver.is_none_or(|v| !v.pre.is_empty() || !v.build.is_empty()),
                        "{text:?} is a plain release"
                    );
                }
            }
        }
        assert!(plain > 100, "only {plain} plain releases");
    }
}
