//! The package builder and the strict package reader.
//!
//! Hostile archives are crafted with [`RawEntry`], a ustar writer written independently of the
//! crate, so tests can produce what the builder never would: `../` paths, links, devices,
//! extension headers, case duplicates, truncated and padded streams.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::io::{self, Cursor, Read};
use std::path::Path;

use plugstore_format::digest::{DigestingReader, FileDigest, PackageDigest};
use plugstore_format::limits::PackageLimits;
use plugstore_format::manifest::ManifestError;
use plugstore_format::package::{
    CanonicalRule, PackageBuilder, PackageContents, PackageError, build_dir_package,
    extract_package, read_package, write_dir_package,
};

// ---------------------------------------------------------------------------------------------
// Allocation tracking, per thread, so streaming claims can be measured while tests run in
// parallel.
// ---------------------------------------------------------------------------------------------

struct TrackingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE_BYTES.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are recorded.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            track(layout.size() as isize);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            track(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Runs `work` and returns its result with the most heap memory this thread held meanwhile.
fn peak_heap_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    LIVE_BYTES.set(0);
    PEAK_BYTES.set(0);
    let result = work();
    (result, PEAK_BYTES.get().max(0) as usize)
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const MANIFEST: &str = r#"format = 1

[plugin]
id = "acme/widget"
version = "1.0.0"
kind = "wasm"
entry = "plugin.wasm"
targets = ["any"]
description = "A widget for tests"

[host]
compatibility = ">=1.0"
"#;

const WASM: &[u8] = b"\0asm\x01\0\0\0";

const MIB: u64 = 1024 * 1024;

/// A ustar entry written field by field, with canonical defaults that tests then break.
#[derive(Clone)]
struct RawEntry {
    name: Vec<u8>,
    prefix: Vec<u8>,
    type_flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    declared_size: Option<u64>,
    link_name: Vec<u8>,
    magic: [u8; 8],
    uname: Vec<u8>,
    gname: Vec<u8>,
    content: Vec<u8>,
    overrides: Vec<(usize, Vec<u8>)>,
    checksum_offset: i64,
    padding_byte: u8,
}

fn octal(width: usize, value: u64) -> Vec<u8> {
    let mut text = format!("{value:0digits$o}", digits = width - 1).into_bytes();
    text.push(0);
    text
}

impl RawEntry {
    /// A canonical regular file, split into prefix and name the way the format requires.
    fn file(path: &str, content: &[u8]) -> Self {
        let (prefix, name) = if path.len() <= 100 {
            ("", path)
        } else {
            let at = path[..=155.min(path.len() - 1)]
                .rfind('/')
                .expect("splittable path");
            (&path[..at], &path[at + 1..])
        };
        Self::named(name.as_bytes(), prefix.as_bytes(), content)
    }

    fn named(name: &[u8], prefix: &[u8], content: &[u8]) -> Self {
        Self {
            name: name.to_vec(),
            prefix: prefix.to_vec(),
            type_flag: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            declared_size: None,
            link_name: Vec::new(),
            magic: *b"ustar\x0000",
            uname: Vec::new(),
            gname: Vec::new(),
            content: content.to_vec(),
            overrides: Vec::new(),
            checksum_offset: 0,
            padding_byte: 0,
        }
    }

    fn special(path: &str, type_flag: u8) -> Self {
        Self {
            type_flag,
            ..Self::file(path, b"")
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self
    }

    /// Replaces header bytes at `offset` after the fields are written, before the checksum.
    fn overwrite(self, offset: usize, bytes: &[u8]) -> Self {
        self.with(|entry| entry.overrides.push((offset, bytes.to_vec())))
    }

    fn header(&self) -> [u8; 512] {
        let mut header = [0u8; 512];
        let mut put = |offset: usize, bytes: &[u8]| {
            header[offset..offset + bytes.len()].copy_from_slice(bytes);
        };
        put(0, &self.name);
        put(100, &octal(8, u64::from(self.mode)));
        put(108, &octal(8, self.uid));
        put(116, &octal(8, self.gid));
        let size = self.declared_size.unwrap_or(self.content.len() as u64);
        if size < 8u64.pow(11) {
            put(124, &octal(12, size));
        } else {
            // GNU base-256 for sizes octal cannot hold.
            let mut field = [0u8; 12];
            field[0] = 0x80;
            field[4..].copy_from_slice(&size.to_be_bytes());
            put(124, &field);
        }
        put(136, &octal(12, self.mtime));
        put(156, &[self.type_flag]);
        put(157, &self.link_name);
        put(257, &self.magic);
        put(265, &self.uname);
        put(297, &self.gname);
        put(329, &octal(8, 0));
        put(337, &octal(8, 0));
        put(345, &self.prefix);
        for (offset, bytes) in &self.overrides {
            put(*offset, bytes);
        }
        header[148..156].fill(b' ');
        let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
        let sum = (sum as i64 + self.checksum_offset) as u64;
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        header
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = self.header().to_vec();
        bytes.extend_from_slice(&self.content);
        let padding = (512 - self.content.len() % 512) % 512;
        bytes.extend(std::iter::repeat_n(self.padding_byte, padding));
        bytes
    }
}

/// The entries plus the two zero blocks that end an archive.
fn archive(entries: &[RawEntry]) -> Vec<u8> {
    let mut bytes: Vec<u8> = entries.iter().flat_map(RawEntry::bytes).collect();
    bytes.extend_from_slice(&[0u8; 1024]);
    bytes
}

fn manifest_entry() -> RawEntry {
    RawEntry::file("plugin.toml", MANIFEST.as_bytes())
}

fn wasm_entry() -> RawEntry {
    RawEntry::file("plugin.wasm", WASM)
}

/// A valid package with `first` placed before the manifest (its path should sort first).
fn with_first(first: RawEntry) -> Vec<u8> {
    archive(&[first, manifest_entry(), wasm_entry()])
}

fn read(bytes: &[u8]) -> Result<PackageContents, PackageError> {
    read_package(bytes, &PackageLimits::default())
}

/// Asserts that the reader refuses `bytes` with an error matching the pattern.
macro_rules! assert_refused {
    (limits = $limits:expr, $bytes:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        assert_refused!(@read $limits; $bytes; $pattern $(if $guard)?)
    };
    (@read $limits:expr; $bytes:expr; $pattern:pat $(if $guard:expr)?) => {
        match read_package(&$bytes[..], &$limits) {
            Err(error) => {
                let description = format!("{error:?} ({error})");
                assert!(
                    matches!(error, $pattern $(if $guard)?),
                    "unexpected error: {description}"
                );
            }
            Ok(contents) => panic!("package was accepted: {:?}", contents.files),
        }
    };
    ($bytes:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        assert_refused!(@read PackageLimits::default(); $bytes; $pattern $(if $guard)?)
    };
}

fn base_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("plugin.toml", MANIFEST.as_bytes().to_vec()),
        ("plugin.wasm", WASM.to_vec()),
    ]
}

fn write_file(dir: &Path, relative: &str, contents: &[u8]) {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Builder: determinism, round trips, canonical bytes
// ---------------------------------------------------------------------------------------------

#[test]
fn builder_is_deterministic() {
    let mut files = base_files();
    files.push(("assets/icon.png", vec![7u8; 1000]));
    files.push(("README.md", b"# widget".to_vec()));
    let first = PackageBuilder::from_files(files.clone())
        .unwrap()
        .to_vec()
        .unwrap();
    files.reverse();
    let second = PackageBuilder::from_files(files).unwrap().to_vec().unwrap();
    assert_eq!(first, second);
    assert_eq!(first.len() % 512, 0);
}

#[test]
fn directory_builds_ignore_creation_order_and_timestamps() {
    let files: &[(&str, &[u8])] = &[
        ("plugin.toml", MANIFEST.as_bytes()),
        ("plugin.wasm", WASM),
        ("assets/a.txt", b"alpha"),
        ("assets/deep/b.txt", b"beta"),
        ("z-last.txt", b"zulu"),
        (".hidden", b"hidden files ship too"),
    ];
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    for (index, (path, contents)) in files.iter().enumerate() {
        write_file(one.path(), path, contents);
        let file = fs::File::options()
            .write(true)
            .open(one.path().join(path))
            .unwrap();
        file.set_modified(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + index as u64),
        )
        .unwrap();
    }
    for (path, contents) in files.iter().rev() {
        write_file(two.path(), path, contents);
    }
    let from_one = build_dir_package(one.path()).unwrap();
    let from_two = build_dir_package(two.path()).unwrap();
    assert_eq!(from_one, from_two);

    // Same bytes as from memory, and the streaming writer reports the same identity.
    let from_memory = PackageBuilder::from_files(files.iter().map(|(p, c)| (*p, c.to_vec())))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(from_one, from_memory);
    let mut streamed = Vec::new();
    let (digest, length) = write_dir_package(one.path(), &mut streamed).unwrap();
    assert_eq!(streamed, from_one);
    assert_eq!(digest, PackageDigest::of(&from_one));
    assert_eq!(length, from_one.len() as u64);
}

#[cfg(unix)]
#[test]
fn execute_bits_become_0755_and_nothing_else_survives() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "plugin.toml", MANIFEST.as_bytes());
    write_file(dir.path(), "plugin.wasm", WASM);
    write_file(dir.path(), "bin/tool", b"#!/bin/sh\n");
    write_file(dir.path(), "secret", b"group-only");
    fs::set_permissions(
        dir.path().join("bin/tool"),
        fs::Permissions::from_mode(0o710),
    )
    .unwrap();
    fs::set_permissions(dir.path().join("secret"), fs::Permissions::from_mode(0o600)).unwrap();

    let bytes = build_dir_package(dir.path()).unwrap();
    let contents = read(&bytes).unwrap();
    assert!(contents.file("bin/tool").unwrap().executable);
    assert!(!contents.file("secret").unwrap().executable);
    assert!(!contents.file("plugin.toml").unwrap().executable);
}

#[test]
fn round_trip_reports_every_file() {
    let big = vec![0x5au8; 3000];
    let long_path = format!("{}/{}", "d".repeat(120), "f".repeat(90));
    let builder = PackageBuilder::from_files_with_modes([
        ("plugin.toml", MANIFEST.as_bytes().to_vec(), false),
        ("plugin.wasm", WASM.to_vec(), false),
        ("bin/helper", b"#!/bin/sh".to_vec(), true),
        ("data/big.bin", big.clone(), false),
        ("empty", Vec::new(), false),
        (long_path.as_str(), b"long".to_vec(), false),
    ])
    .unwrap();
    assert_eq!(builder.manifest().id().to_string(), "acme/widget");
    let bytes = builder.to_vec().unwrap();
    let contents = read(&bytes).unwrap();

    assert_eq!(contents.digest, PackageDigest::of(&bytes));
    assert_eq!(contents.length, bytes.len() as u64);
    assert_eq!(contents.manifest_text, MANIFEST);
    assert_eq!(contents.manifest.entry(), "plugin.wasm");
    let paths: Vec<&str> = contents.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "bin/helper",
            "data/big.bin",
            long_path.as_str(),
            "empty",
            "plugin.toml",
            "plugin.wasm"
        ]
    );
    let big_file = contents.file("data/big.bin").unwrap();
    assert_eq!(big_file.size, 3000);
    assert_eq!(big_file.sha256, FileDigest::of(&big));
    assert!(!big_file.executable);
    assert!(contents.file("bin/helper").unwrap().executable);
    assert_eq!(contents.file("empty").unwrap().size, 0);
    assert_eq!(
        contents.unpacked_size,
        (MANIFEST.len() + WASM.len() + 9 + 3000 + 4) as u64
    );
    assert!(contents.file("missing").is_none());
}

#[test]
fn builder_writes_exactly_the_canonical_layout() {
    // The independent writer above and the builder must agree byte for byte.
    let long_path = format!("{}/{}/{}", "d".repeat(100), "e".repeat(40), "f".repeat(60));
    let built = PackageBuilder::from_files_with_modes([
        ("plugin.toml", MANIFEST.as_bytes().to_vec(), false),
        ("plugin.wasm", WASM.to_vec(), false),
        ("run.sh", b"echo".to_vec(), true),
        (long_path.as_str(), b"x".to_vec(), false),
    ])
    .unwrap()
    .to_vec()
    .unwrap();
    let crafted = archive(&[
        RawEntry::file(&long_path, b"x"),
        manifest_entry(),
        wasm_entry(),
        RawEntry::file("run.sh", b"echo").with(|e| e.mode = 0o755),
    ]);
    assert_eq!(built, crafted);
    // The long path really uses the prefix field.
    assert_eq!(
        &built[345..345 + 141],
        format!("{}/{}", "d".repeat(100), "e".repeat(40)).as_bytes()
    );
}

#[test]
fn other_tar_readers_agree() {
    let bytes = PackageBuilder::from_files_with_modes([
        ("plugin.toml", MANIFEST.as_bytes().to_vec(), false),
        ("plugin.wasm", WASM.to_vec(), false),
        ("bin/run", b"run".to_vec(), true),
    ])
    .unwrap()
    .to_vec()
    .unwrap();

    let mut archive = tar::Archive::new(&bytes[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.entry_type(), tar::EntryType::Regular);
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.username().unwrap(), Some(""));
        assert!(header.as_ustar().is_some());
        let mode = header.mode().unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        seen.push((path, mode, contents));
    }
    assert_eq!(
        seen,
        [
            ("bin/run".to_owned(), 0o755, b"run".to_vec()),
            (
                "plugin.toml".to_owned(),
                0o644,
                MANIFEST.as_bytes().to_vec()
            ),
            ("plugin.wasm".to_owned(), 0o644, WASM.to_vec()),
        ]
    );

    // GNU or BSD tar, when installed, lists the same files without complaint.
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("widget.tar");
    fs::write(&package, &bytes).unwrap();
    match std::process::Command::new("tar")
        .arg("-tf")
        .arg(&package)
        .output()
    {
        Ok(output) => {
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                output.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                "bin/run\nplugin.toml\nplugin.wasm\n"
            );
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => panic!("cannot run tar: {error}"),
    }
}

/// A small deterministic generator, so the property test needs no extra dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
}

#[test]
fn builder_and_reader_agree_on_generated_file_sets() {
    // Components chosen to collide: case, Unicode case, file/directory, Windows rules.
    let parts = [
        "a",
        "A",
        "b",
        "ä",
        "Ä",
        "a.txt",
        "A.TXT",
        "con",
        "x.",
        "-",
        ".",
        "..",
        "",
        "dir",
        "Dir",
        "plugin.toml",
        "é",
        "e\u{301}",
    ];
    let mut random = Lcg(42);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..400 {
        let mut files = base_files()
            .into_iter()
            .map(|(p, c)| (p.to_owned(), c))
            .collect::<Vec<_>>();
        for _ in 0..(random.next() % 4 + 1) {
            let depth = random.next() % 3 + 1;
            let path: Vec<&str> = (0..depth).map(|_| random.pick(&parts)).collect();
            files.push((
                path.join("/"),
                vec![random.next() as u8; random.next() as usize % 700],
            ));
        }
        let built = PackageBuilder::from_files(files.clone()).and_then(|b| b.to_vec());

        // The same files, crafted independently in canonical order, without the builder.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let crafted = archive(
            &files
                .iter()
                .map(|(path, contents)| RawEntry::file(path, contents))
                .collect::<Vec<_>>(),
        );
        let read_back = read(&crafted);
        match (&built, &read_back) {
            (Ok(bytes), Ok(contents)) => {
                accepted += 1;
                assert_eq!(bytes, &crafted);
                assert_eq!(read(bytes).unwrap().files, contents.files);
            }
            (Err(_), Err(_)) => refused += 1,
            _ => panic!(
                "builder and reader disagree on {:?}: {built:?} vs {read_back:?}",
                files.iter().map(|f| &f.0).collect::<Vec<_>>()
            ),
        }
    }
    assert!(
        accepted > 50 && refused > 50,
        "accepted {accepted}, refused {refused}"
    );
}

// ---------------------------------------------------------------------------------------------
// Builder refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn builder_refuses_what_the_reader_would() {
    let build = |extra: Vec<(&'static str, Vec<u8>)>| {
        let mut files = base_files();
        files.extend(extra);
        PackageBuilder::from_files(files).unwrap_err()
    };
    assert!(
        matches!(build(vec![("../x", vec![])]), PackageError::ParentDirComponent { path } if path == "../x")
    );
    assert!(matches!(
        build(vec![("/abs", vec![])]),
        PackageError::AbsolutePath { .. }
    ));
    assert!(matches!(
        build(vec![("a", vec![]), ("a", vec![])]),
        PackageError::DuplicatePath { .. }
    ));
    assert!(matches!(
        build(vec![("Read.me", vec![]), ("READ.ME", vec![])]),
        PackageError::CaseCollision { path, existing } if path == "Read.me" && existing == "READ.ME"
    ));
    assert!(matches!(
        build(vec![("a", vec![]), ("a/b", vec![])]),
        PackageError::FileDirectoryConflict { .. }
    ));
    assert!(matches!(
        build(vec![("aux.dll", vec![])]),
        PackageError::WindowsReservedName { .. }
    ));
    let unsplittable: &'static str = Box::leak(format!("d/{}", "f".repeat(120)).into_boxed_str());
    assert!(matches!(
        build(vec![(unsplittable, vec![])]),
        PackageError::PathNotRepresentable { .. }
    ));

    let only_wasm = PackageBuilder::from_files([("plugin.wasm", WASM)]).unwrap_err();
    assert!(matches!(only_wasm, PackageError::MissingManifest));
    let nested = PackageBuilder::from_files([
        ("sub/plugin.toml", MANIFEST.as_bytes()),
        ("plugin.wasm", WASM),
    ])
    .unwrap_err();
    assert!(
        matches!(nested, PackageError::ManifestNotAtRoot { path } if path == "sub/plugin.toml")
    );
    let no_entry = PackageBuilder::from_files([("plugin.toml", MANIFEST.as_bytes())]).unwrap_err();
    assert!(
        matches!(no_entry, PackageError::MissingEntryPoint { entry } if entry == "plugin.wasm")
    );
    let bad_manifest = MANIFEST.replace("1.0.0", "1.0");
    let invalid = PackageBuilder::from_files([
        ("plugin.toml", bad_manifest.as_bytes()),
        ("plugin.wasm", WASM),
    ])
    .unwrap_err();
    assert!(matches!(
        invalid,
        PackageError::InvalidManifest(ManifestError::InvalidVersion { .. })
    ));
    let huge_manifest = format!("{MANIFEST}#{}", "x".repeat(70_000));
    let too_large = PackageBuilder::from_files([
        ("plugin.toml", huge_manifest.as_bytes()),
        ("plugin.wasm", WASM),
    ])
    .unwrap_err();
    assert!(matches!(too_large, PackageError::ManifestTooLarge { .. }));
    let not_utf8 =
        PackageBuilder::from_files([("plugin.toml", &b"\xff\xfe"[..]), ("plugin.wasm", WASM)])
            .unwrap_err();
    assert!(matches!(not_utf8, PackageError::ManifestNotUtf8));

    let mut many = base_files()
        .into_iter()
        .map(|(p, c)| (p.to_owned(), c))
        .collect::<Vec<_>>();
    many.extend((0..10_000).map(|i| (format!("f/{i}"), Vec::new())));
    assert!(matches!(
        PackageBuilder::from_files(many).unwrap_err(),
        PackageError::TooManyEntries { limit: 10_000 }
    ));
}

#[test]
fn directory_builder_refuses_missing_and_invalid_manifests() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "plugin.wasm", WASM);
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::MissingManifest)
    ));
    write_file(
        dir.path(),
        "plugin.toml",
        MANIFEST.replace("wasm\"", "jar\"").as_bytes(),
    );
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::InvalidManifest(ManifestError::InvalidKind(_)))
    ));
    write_file(
        dir.path(),
        "plugin.toml",
        MANIFEST.replace("plugin.wasm", "main.wasm").as_bytes(),
    );
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::MissingEntryPoint { entry }) if entry == "main.wasm"
    ));
    write_file(
        dir.path(),
        "plugin.toml",
        format!("{MANIFEST}#{}", "x".repeat(70_000)).as_bytes(),
    );
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::ManifestTooLarge { .. })
    ));
    assert!(matches!(
        build_dir_package(&dir.path().join("absent")),
        Err(PackageError::Source { .. })
    ));
}

#[cfg(unix)]
#[test]
fn directory_builder_refuses_links_and_special_files() {
    use std::os::unix::ffi::OsStrExt;

    let valid = || {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "plugin.toml", MANIFEST.as_bytes());
        write_file(dir.path(), "plugin.wasm", WASM);
        dir
    };

    let dir = valid();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::Symlink { path, target }) if path == "passwd" && target == "/etc/passwd"
    ));

    let dir = valid();
    fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("sub/root")).unwrap();
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::Symlink { path, .. }) if path == "sub/root"
    ));

    let dir = valid();
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("control.sock")).unwrap();
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::NotARegularFile { path }) if path == "control.sock"
    ));

    let dir = valid();
    fs::write(
        dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
        b"",
    )
    .unwrap();
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::NonUtf8Path { .. })
    ));

    let dir = valid();
    write_file(dir.path(), "nul.txt", b"");
    assert!(matches!(
        build_dir_package(dir.path()),
        Err(PackageError::WindowsReservedName { component, .. }) if component == "nul.txt"
    ));
}

// ---------------------------------------------------------------------------------------------
// Reader refusals: paths
// ---------------------------------------------------------------------------------------------

#[test]
fn reader_refuses_escaping_and_absolute_paths() {
    for path in ["../evil", "a/../../evil", ".."] {
        assert_refused!(
            with_first(RawEntry::file(path, b"x")),
            PackageError::ParentDirComponent { path: p } if p == path
        );
    }
    for path in ["/etc/passwd", "C:/Windows/evil.dll", "c:evil"] {
        assert_refused!(
            with_first(RawEntry::file(path, b"x")),
            PackageError::AbsolutePath { path: p } if p == path
        );
    }
    assert_refused!(
        with_first(RawEntry::file("..\\evil", b"x")),
        PackageError::Backslash { .. }
    );
}

#[test]
fn reader_refuses_non_canonical_paths() {
    for path in ["./a", "a//b", "a/./b"] {
        assert_refused!(
            with_first(RawEntry::file(path, b"x")),
            PackageError::NonCanonicalPath { path: p } if p == path
        );
    }
    // A regular file whose name ends in '/': not a directory entry, and not canonical either.
    assert_refused!(
        with_first(RawEntry::file("a/", b"")),
        PackageError::NonCanonicalPath { .. }
    );
}

#[test]
fn reader_refuses_control_characters_and_hidden_name_bytes() {
    assert_refused!(
        with_first(RawEntry::named(b"a\x01b", b"", b"x")),
        PackageError::ControlCharacter {
            character: '\u{1}',
            ..
        }
    );
    assert_refused!(
        with_first(RawEntry::named(b"a\x1b[31mred", b"", b"x")),
        PackageError::ControlCharacter {
            character: '\u{1b}',
            ..
        }
    );
    // Bytes after a NUL are invisible to most tools, so a NUL inside the field is refused.
    assert_refused!(
        with_first(RawEntry::named(b"a\0hidden", b"", b"x")),
        PackageError::ControlCharacter {
            character: '\0',
            ..
        }
    );
    assert_refused!(
        with_first(RawEntry::named(b"a", b"dir\0x", b"x")),
        PackageError::ControlCharacter {
            character: '\0',
            ..
        }
    );
    assert_refused!(
        with_first(RawEntry::named(b"a\xffb", b"", b"x")),
        PackageError::NonUtf8Path { .. }
    );
}

#[test]
fn reader_refuses_names_windows_cannot_hold() {
    for (path, component) in [
        ("CON", "CON"),
        ("aux.txt", "aux.txt"),
        ("lib/nul", "nul"),
        ("COM1.tar.gz", "COM1.tar.gz"),
        ("Lpt9.log", "Lpt9.log"),
        ("a/prn", "prn"),
    ] {
        assert_refused!(
            with_first(RawEntry::file(path, b"x")),
            PackageError::WindowsReservedName { path: p, component: c } if p == path && c == component
        );
    }
    for (path, character) in [
        ("a<b", '<'),
        ("a>b", '>'),
        ("ab:stream", ':'),
        ("a\"b", '"'),
        ("a|b", '|'),
        ("a?", '?'),
        ("a*", '*'),
    ] {
        assert_refused!(
            with_first(RawEntry::file(path, b"x")),
            PackageError::WindowsInvalidCharacter { character: c, .. } if c == character
        );
    }
    for (path, component) in [("a.", "a."), ("a ", "a "), ("dir./x", "dir.")] {
        assert_refused!(
            with_first(RawEntry::file(path, b"x")),
            PackageError::TrailingDotOrSpace { component: c, .. } if c == component
        );
    }
}

#[test]
fn reader_refuses_paths_over_the_length_and_depth_limits() {
    let long = format!("{}/{}", "d".repeat(140), "f".repeat(100));
    assert_eq!(long.len(), 241);
    assert_refused!(
        with_first(RawEntry::file(&long, b"x")),
        PackageError::PathTooLong {
            length: 241,
            limit: 240,
            ..
        }
    );
    let deep = ["a"; 33].join("/");
    assert_refused!(
        with_first(RawEntry::file(&deep, b"x")),
        PackageError::PathTooDeep {
            depth: 33,
            limit: 32,
            ..
        }
    );
    let tight = PackageLimits {
        max_path_len: 20,
        max_path_depth: 2,
        ..PackageLimits::default()
    };
    assert_refused!(
        limits = tight.clone(),
        with_first(RawEntry::file("a/b/c", b"x")),
        PackageError::PathTooDeep {
            depth: 3,
            limit: 2,
            ..
        }
    );
    assert_refused!(
        limits = tight,
        with_first(RawEntry::file("assets-that-are-longer", b"x")),
        PackageError::PathTooLong { .. }
    );
}

// ---------------------------------------------------------------------------------------------
// Reader refusals: entry types
// ---------------------------------------------------------------------------------------------

#[test]
fn reader_refuses_links_devices_directories_and_extension_headers() {
    let link =
        |flag| RawEntry::special("evil", flag).with(|e| e.link_name = b"/etc/passwd".to_vec());
    assert_refused!(
        with_first(link(b'2')),
        PackageError::Symlink { path, target } if path == "evil" && target == "/etc/passwd"
    );
    assert_refused!(
        with_first(link(b'1')),
        PackageError::HardLink { path, target } if path == "evil" && target == "/etc/passwd"
    );
    assert_refused!(
        with_first(RawEntry::special("dev/sda", b'3')),
        PackageError::DeviceFile { .. }
    );
    assert_refused!(
        with_first(RawEntry::special("dev/sda", b'4')),
        PackageError::DeviceFile { .. }
    );
    assert_refused!(
        with_first(RawEntry::special("fifo", b'6')),
        PackageError::Fifo { .. }
    );
    assert_refused!(
        with_first(RawEntry::special("assets/", b'5')),
        PackageError::DirectoryEntry { path } if path == "assets/"
    );
    assert_refused!(
        with_first(RawEntry::special("contiguous", b'7')),
        PackageError::UnsupportedEntryType { type_flag: '7', .. }
    );
    assert_refused!(
        with_first(RawEntry::special("sparse", b'S')),
        PackageError::UnsupportedEntryType { type_flag: 'S', .. }
    );

    // A PAX header could rename the next entry to anything; refused on sight.
    let pax_record = b"30 path=../../../../etc/passwd\n";
    let pax = RawEntry::file("PaxHeaders.0/evil", pax_record).with(|e| e.type_flag = b'x');
    assert_refused!(
        archive(&[
            pax,
            RawEntry::file("evil", b"x"),
            manifest_entry(),
            wasm_entry()
        ]),
        PackageError::ExtensionHeader { type_flag: 'x', .. }
    );
    let global =
        RawEntry::file("pax_global_header", b"20 comment=global\n").with(|e| e.type_flag = b'g');
    assert_refused!(
        with_first(global),
        PackageError::ExtensionHeader { type_flag: 'g', .. }
    );

    // GNU long names and long link names use the GNU magic; the type is refused first.
    let gnu = |flag| {
        RawEntry::file("././@LongLink", b"../../evil\0").with(|e| {
            e.type_flag = flag;
            e.magic = *b"ustar  \0";
        })
    };
    assert_refused!(
        with_first(gnu(b'L')),
        PackageError::ExtensionHeader { type_flag: 'L', .. }
    );
    assert_refused!(
        with_first(gnu(b'K')),
        PackageError::ExtensionHeader { type_flag: 'K', .. }
    );
}

// ---------------------------------------------------------------------------------------------
// Reader refusals: collisions
// ---------------------------------------------------------------------------------------------

#[test]
fn reader_refuses_duplicates_and_collisions() {
    assert_refused!(
        archive(&[RawEntry::file("a.txt", b"1"), RawEntry::file("a.txt", b"2"), manifest_entry(), wasm_entry()]),
        PackageError::DuplicatePath { path } if path == "a.txt"
    );
    // A second manifest after the first would otherwise replace what was checked.
    assert_refused!(
        archive(&[manifest_entry(), manifest_entry(), wasm_entry()]),
        PackageError::DuplicatePath { .. }
    );
    assert_refused!(
        archive(&[RawEntry::file("README", b"1"), RawEntry::file("readme", b"2"), manifest_entry(), wasm_entry()]),
        PackageError::CaseCollision { path, existing } if path == "readme" && existing == "README"
    );
    assert_refused!(
        archive(&[
            RawEntry::file("Ölfarbe", b"1"),
            RawEntry::file("ölfarbe", b"2"),
            manifest_entry(),
            wasm_entry()
        ]),
        PackageError::CaseCollision { .. }
    );
    assert_refused!(
        archive(&[RawEntry::file("a", b"1"), RawEntry::file("a/b", b"2"), manifest_entry(), wasm_entry()]),
        PackageError::FileDirectoryConflict { path, existing } if path == "a/b" && existing == "a"
    );
    // Not adjacent in sorted order, and differing in case: still the same name on Windows.
    assert_refused!(
        archive(&[
            RawEntry::file("A", b"1"),
            RawEntry::file("a-b", b"2"),
            RawEntry::file("a/b", b"3"),
            manifest_entry(),
            wasm_entry()
        ]),
        PackageError::FileDirectoryConflict { path, existing } if path == "a/b" && existing == "A"
    );
}

// ---------------------------------------------------------------------------------------------
// Reader refusals: limits
// ---------------------------------------------------------------------------------------------

#[test]
fn reader_enforces_entry_and_size_limits() {
    let few = PackageLimits {
        max_entries: 3,
        ..PackageLimits::default()
    };
    let four = archive(&[
        RawEntry::file("a", b""),
        RawEntry::file("b", b""),
        manifest_entry(),
        wasm_entry(),
    ]);
    assert_refused!(
        limits = few,
        four,
        PackageError::TooManyEntries { limit: 3 }
    );

    let small = PackageLimits {
        max_unpacked_size: 300,
        ..PackageLimits::default()
    };
    assert_refused!(
        limits = small,
        with_first(RawEntry::file("big", &[1u8; 200])),
        PackageError::UnpackedSizeTooLarge { path, limit: 300, .. } if path == "plugin.toml"
    );

    let tiny_manifest = PackageLimits {
        max_manifest_size: 10,
        ..PackageLimits::default()
    };
    assert_refused!(
        limits = tiny_manifest,
        archive(&[manifest_entry(), wasm_entry()]),
        PackageError::ManifestTooLarge { limit: 10, .. }
    );
    let huge_manifest = format!("{MANIFEST}#{}", "x".repeat(70_000));
    assert_refused!(
        archive(&[
            RawEntry::file("plugin.toml", huge_manifest.as_bytes()),
            wasm_entry()
        ]),
        PackageError::ManifestTooLarge { limit: 65536, .. }
    );
}

/// Counts the bytes a reader has handed out.
struct CountingReader<R> {
    inner: R,
    consumed: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.consumed += read as u64;
        Ok(read)
    }
}

#[test]
fn a_huge_declared_size_is_refused_from_the_header_alone() {
    let claim = RawEntry::file("a-huge-file.bin", b"").with(|e| e.declared_size = Some(100 << 30));
    let mut input = CountingReader {
        inner: Cursor::new(claim.header()).chain(io::repeat(0).take(MIB)),
        consumed: 0,
    };
    let (result, peak) = peak_heap_during(|| read_package(&mut input, &PackageLimits::default()));
    assert!(
        matches!(result, Err(PackageError::UnpackedSizeTooLarge { size, .. }) if size == 100 << 30),
        "{result:?}"
    );
    assert_eq!(input.consumed, 512, "only the header was read");
    assert!(peak < 256 * 1024, "peak heap {peak} bytes");
}

#[test]
fn a_100_mib_package_streams_in_constant_memory() {
    let size = 100 * MIB;
    let big_header = RawEntry::file("big.bin", b"")
        .with(|e| e.declared_size = Some(size))
        .header();
    let rest = archive(&[manifest_entry(), wasm_entry()]);
    let stream = || {
        Cursor::new(big_header)
            .chain(io::repeat(0xa5).take(size))
            .chain(Cursor::new(rest.clone()))
    };

    let (contents, peak) = peak_heap_during(|| read_package(stream(), &PackageLimits::default()));
    let contents = contents.unwrap();
    assert!(
        peak < MIB as usize,
        "peak heap {peak} bytes while reading 100 MiB"
    );
    assert_eq!(contents.file("big.bin").unwrap().size, size);
    assert_eq!(
        contents.unpacked_size,
        size + (MANIFEST.len() + WASM.len()) as u64
    );

    let mut reference = DigestingReader::new(stream());
    io::copy(&mut reference, &mut io::sink()).unwrap();
    assert_eq!((contents.digest, contents.length), reference.finish());
}

#[test]
fn a_100_mib_file_is_packaged_in_constant_memory() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "plugin.toml", MANIFEST.as_bytes());
    write_file(dir.path(), "plugin.wasm", WASM);
    // Sparse, so the test costs no disk space.
    fs::File::create(dir.path().join("big.bin"))
        .unwrap()
        .set_len(100 * MIB)
        .unwrap();

    let (result, peak) = peak_heap_during(|| write_dir_package(dir.path(), io::sink()));
    let (_, length) = result.unwrap();
    assert!(
        peak < MIB as usize,
        "peak heap {peak} bytes while packaging 100 MiB"
    );
    assert_eq!(length, 512 + 100 * MIB + 512 + 512 + 512 + 512 + 1024);
}

// ---------------------------------------------------------------------------------------------
// Reader refusals: manifest
// ---------------------------------------------------------------------------------------------

#[test]
fn reader_requires_a_valid_root_manifest_and_its_entry_point() {
    assert_refused!(archive(&[wasm_entry()]), PackageError::MissingManifest);
    assert_refused!(
        archive(&[wasm_entry(), RawEntry::file("sub/plugin.toml", MANIFEST.as_bytes())]),
        PackageError::ManifestNotAtRoot { path } if path == "sub/plugin.toml"
    );
    assert_refused!(
        archive(&[manifest_entry()]),
        PackageError::MissingEntryPoint { entry } if entry == "plugin.wasm"
    );
    // The entry point must be a file, not a directory implied by other files.
    assert_refused!(
        archive(&[manifest_entry(), RawEntry::file("plugin.wasm/inner", WASM)]),
        PackageError::MissingEntryPoint { .. }
    );
    let bad_version = MANIFEST.replace("1.0.0", "1.0");
    assert_refused!(
        archive(&[
            RawEntry::file("plugin.toml", bad_version.as_bytes()),
            wasm_entry()
        ]),
        PackageError::InvalidManifest(ManifestError::InvalidVersion { .. })
    );
    let unknown_field = MANIFEST.replace("[host]", "[host]\nextra = 1");
    assert_refused!(
        archive(&[
            RawEntry::file("plugin.toml", unknown_field.as_bytes()),
            wasm_entry()
        ]),
        PackageError::InvalidManifest(ManifestError::UnknownField { .. })
    );
    assert_refused!(
        archive(&[
            RawEntry::file("plugin.toml", b"format = 1\n\xff"),
            wasm_entry()
        ]),
        PackageError::ManifestNotUtf8
    );
}

// ---------------------------------------------------------------------------------------------
// Reader refusals: canonical form and archive structure
// ---------------------------------------------------------------------------------------------

#[test]
fn reader_refuses_bad_checksums() {
    assert_refused!(
        with_first(RawEntry::file("a", b"x").with(|e| e.checksum_offset = 1)),
        PackageError::ChecksumMismatch { offset: 0, path } if path == "a"
    );
    let mut bytes = archive(&[manifest_entry(), wasm_entry()]);
    bytes[1024 + 1] ^= 0x01; // flip a bit in the second header's name
    assert_refused!(bytes, PackageError::ChecksumMismatch { offset: 1024, .. });
}

#[test]
fn reader_refuses_non_canonical_order_and_fields() {
    let not_canonical = |entry: RawEntry, expected: CanonicalRule| match read(&with_first(entry)) {
        Err(PackageError::NotCanonical { rule, .. }) => assert_eq!(rule, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    };
    let file = || RawEntry::file("a", b"contents");

    not_canonical(
        file().with(|e| e.mtime = 1_700_000_000),
        CanonicalRule::Mtime,
    );
    not_canonical(file().with(|e| e.uid = 1000), CanonicalRule::Owner);
    not_canonical(file().with(|e| e.gid = 1), CanonicalRule::Owner);
    not_canonical(
        file().with(|e| e.uname = b"root".to_vec()),
        CanonicalRule::OwnerNames,
    );
    not_canonical(
        file().with(|e| e.gname = b"wheel".to_vec()),
        CanonicalRule::OwnerNames,
    );
    for mode in [0o600, 0o777, 0o100644, 0o4755] {
        not_canonical(file().with(|e| e.mode = mode), CanonicalRule::Mode);
    }
    not_canonical(
        file().with(|e| e.magic = *b"ustar  \0"),
        CanonicalRule::UstarMagic,
    );
    not_canonical(file().with(|e| e.magic = [0; 8]), CanonicalRule::UstarMagic);
    not_canonical(file().with(|e| e.type_flag = 0), CanonicalRule::TypeFlag);
    not_canonical(
        file().with(|e| e.link_name = b"x".to_vec()),
        CanonicalRule::LinkName,
    );
    not_canonical(
        file().overwrite(329, b"0000001\0"),
        CanonicalRule::DeviceNumbers,
    );
    not_canonical(
        file().overwrite(100, b"rw-r--r-"),
        CanonicalRule::NumericField,
    );
    not_canonical(
        file().with(|e| e.padding_byte = b'!'),
        CanonicalRule::ContentPadding,
    );
    // Same values, other encodings: each would give the same files another digest.
    not_canonical(
        file().overwrite(124, b"        10 \0"),
        CanonicalRule::HeaderLayout,
    );
    not_canonical(
        file().overwrite(100, b"000644 \0"),
        CanonicalRule::HeaderLayout,
    );
    not_canonical(
        file().overwrite(500, b"hidden"),
        CanonicalRule::HeaderLayout,
    );
    // A prefix split where the whole path would fit in the name field.
    not_canonical(
        RawEntry::named(b"b", b"a", b"contents"),
        CanonicalRule::HeaderLayout,
    );
    // The checksum written in the `tar` crate's seven-digit style.
    let seven_digit = {
        let mut header = file().header();
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        header[148..156].copy_from_slice(format!("{sum:07o}\0").as_bytes());
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"contents");
        bytes.resize(1024, 0);
        bytes.extend(archive(&[manifest_entry(), wasm_entry()]));
        bytes
    };
    assert_refused!(
        seven_digit,
        PackageError::NotCanonical {
            rule: CanonicalRule::HeaderLayout,
            ..
        }
    );

    assert_refused!(
        archive(&[wasm_entry(), manifest_entry()]),
        PackageError::NotCanonical { path, rule: CanonicalRule::Order } if path == "plugin.toml"
    );
}

#[test]
fn reader_refuses_truncated_archives() {
    let whole = archive(&[manifest_entry(), wasm_entry()]);
    for cut in [
        0,
        1,
        300,
        512,
        600,
        1024 + 100,
        whole.len() - 1024,
        whole.len() - 512,
        whole.len() - 1,
    ] {
        assert_refused!(
            whole[..cut],
            PackageError::Truncated { offset } if offset <= cut as u64
        );
    }
}

#[test]
fn reader_refuses_anything_after_the_end_marker() {
    let whole = archive(&[manifest_entry(), wasm_entry()]);
    let mut trailing = whole.clone();
    trailing.push(b'x');
    assert_refused!(
        trailing,
        PackageError::TrailingData { offset } if offset == whole.len() as u64
    );
    // Zero padding to a tar record size would change the digest without changing the files.
    let mut padded = whole.clone();
    padded.extend_from_slice(&[0u8; 10240 - 3 * 512]);
    assert_refused!(padded, PackageError::TrailingData { .. });
    // One zero block, then more entries: a second archive hiding behind the first.
    let mut hidden = whole[..whole.len() - 1024].to_vec();
    hidden.extend_from_slice(&[0u8; 512]);
    hidden.extend(archive(&[RawEntry::file("zz-hidden", b"x")]));
    assert_refused!(
        hidden,
        PackageError::TrailingData { offset } if offset == (whole.len() - 512) as u64
    );
}

#[test]
fn errors_describe_the_problem_without_raw_control_characters() {
    let error = read(&with_first(RawEntry::file("../evil", b"x"))).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#""../evil" has a `..` component, which could escape the install directory"#
    );
    let error = read(&with_first(RawEntry::named(b"a\x1b[2J", b"", b"x"))).unwrap_err();
    assert!(!error.to_string().contains('\x1b'), "{error}");
    let error = read(&with_first(RawEntry::file("a", b"x").with(|e| e.mtime = 5))).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#""a" is not in canonical form: mtime must be 0"#
    );
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

fn sample_package() -> Vec<u8> {
    PackageBuilder::from_files_with_modes([
        ("plugin.toml", MANIFEST.as_bytes().to_vec(), false),
        ("plugin.wasm", WASM.to_vec(), false),
        ("lib/deep/helper.sh", b"#!/bin/sh\n".to_vec(), true),
        ("lib/data.bin", vec![9u8; 70_000], false),
    ])
    .unwrap()
    .to_vec()
    .unwrap()
}

#[test]
fn extraction_writes_the_files_it_checked() {
    let bytes = sample_package();
    let destination = tempfile::tempdir().unwrap();
    let contents =
        extract_package(&bytes[..], &PackageLimits::default(), destination.path()).unwrap();
    assert_eq!(contents.digest, PackageDigest::of(&bytes));
    for file in &contents.files {
        let written = fs::read(destination.path().join(&file.path)).unwrap();
        assert_eq!(written.len() as u64, file.size);
        assert_eq!(FileDigest::of(&written), file.sha256, "{}", file.path);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &str| {
            fs::metadata(destination.path().join(path))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_ne!(mode("lib/deep/helper.sh") & 0o100, 0);
        assert_eq!(mode("plugin.wasm") & 0o111, 0);
    }
}

#[test]
fn extraction_never_overwrites() {
    let bytes = sample_package();
    let destination = tempfile::tempdir().unwrap();
    fs::write(destination.path().join("plugin.toml"), b"already here").unwrap();
    let error =
        extract_package(&bytes[..], &PackageLimits::default(), destination.path()).unwrap_err();
    assert!(
        matches!(&error, PackageError::Extract { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
        "{error:?}"
    );
    assert_eq!(
        fs::read(destination.path().join("plugin.toml")).unwrap(),
        b"already here"
    );
}

#[cfg(unix)]
#[test]
fn extraction_never_follows_links_in_the_destination() {
    let bytes = sample_package();
    let outside = tempfile::tempdir().unwrap();

    let destination = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), destination.path().join("lib")).unwrap();
    let error =
        extract_package(&bytes[..], &PackageLimits::default(), destination.path()).unwrap_err();
    assert!(
        matches!(error, PackageError::ExtractThroughLink { .. }),
        "{error:?}"
    );
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );

    let destination = tempfile::tempdir().unwrap();
    let target = outside.path().join("target");
    std::os::unix::fs::symlink(&target, destination.path().join("plugin.wasm")).unwrap();
    let error =
        extract_package(&bytes[..], &PackageLimits::default(), destination.path()).unwrap_err();
    assert!(
        matches!(&error, PackageError::Extract { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
        "{error:?}"
    );
    assert!(!target.exists(), "a dangling link was not followed");
}

#[test]
fn extraction_refuses_hostile_packages_before_writing_their_files() {
    let destination = tempfile::tempdir().unwrap();
    let hostile = with_first(RawEntry::file("../escaped", b"x"));
    let error =
        extract_package(&hostile[..], &PackageLimits::default(), destination.path()).unwrap_err();
    assert!(matches!(error, PackageError::ParentDirComponent { .. }));
    assert!(
        !destination
            .path()
            .parent()
            .unwrap()
            .join("escaped")
            .exists()
    );
    assert_eq!(fs::read_dir(destination.path()).unwrap().count(), 0);

    let not_a_directory = destination.path().join("file");
    fs::write(&not_a_directory, b"").unwrap();
    let error = extract_package(
        &sample_package()[..],
        &PackageLimits::default(),
        &not_a_directory,
    )
    .unwrap_err();
    assert!(matches!(error, PackageError::ExtractThroughLink { .. }));
}
