//! `plugstore-server keys …`: sets up a store's TUF keys and rotates them (see the operator
//! guide, "Keys").
//!
//! It lives in the library, like the scanner's command line, so the server only dispatches to
//! it, and so the root key holders' steps (`sign-root`) are the same code on an offline
//! machine. Every step that writes goes through [`KeysDir`]; this module parses, prints and
//! puts the steps in order.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::client::MAX_ROOT_BYTES;
use crate::keys::{KeyId, RoleKeys, SigningKey, TopLevelKeys};
use crate::keys_dir::{
    KeysDir, OnlineRole, ROOT_EXPIRY_WARNING, root_key_file_name, rotation_draft, write_key,
};
use crate::root::{RootDraft, RootDraftError, TopLevelRole, VerifiedRoot};
use crate::time::UnixTime;

#[derive(Parser, Debug)]
#[command(
    name = "plugstore-server keys",
    about = "Set up and rotate the store's TUF signing keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a store's keys: the four online keys and root 1, signed by new root keys.
    Generate {
        /// The store's keys directory (online keys and roots); must hold no keys yet.
        #[arg(long)]
        keys_dir: PathBuf,
        /// How many root keys to generate.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
        root_keys: u64,
        /// How many root keys must sign a new root [default: a majority of --root-keys].
        #[arg(long)]
        threshold: Option<u64>,
        /// Where to write the root keys (removable media) [default: --keys-dir, with a
        /// warning].
        #[arg(long)]
        root_key_dir: Option<PathBuf>,
    },
    /// Start replacing one key: generate it and draft the next root (unsigned).
    Rotate {
        /// The store's keys directory.
        #[arg(long)]
        keys_dir: PathBuf,
        /// The role whose key to replace.
        #[arg(long, value_enum)]
        role: RotatedRole,
        /// For --role root: where to write the new root key (on the new holder's media).
        #[arg(long)]
        new_key: Option<PathBuf>,
        /// For --role root with several root keys: the key id to replace.
        #[arg(long)]
        replace: Option<KeyId>,
        /// Where to write the draft of the next root (not for --role bins).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Draft the next root with the same keys and a new expiry (unsigned): the yearly
    /// renewal before the root expires.
    RenewRoot {
        /// The store's keys directory.
        #[arg(long)]
        keys_dir: PathBuf,
        /// Where to write the draft of the next root.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add one root key's signature to a root draft (run by each key holder, offline).
    SignRoot {
        /// The draft, rewritten in place with the signature added.
        #[arg(long)]
        draft: PathBuf,
        /// The root key (PKCS#8, mode 0600).
        #[arg(long)]
        key: PathBuf,
    },
    /// Accept a signed draft as the next root and switch to the keys it lists.
    FinishRoot {
        /// The store's keys directory.
        #[arg(long)]
        keys_dir: PathBuf,
        /// The draft, signed by a threshold of the current root's keys and of its own.
        #[arg(long)]
        draft: PathBuf,
    },
    /// Show the current root, its keys, and the key files present.
    Show {
        /// The store's keys directory.
        #[arg(long)]
        keys_dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RotatedRole {
    Root,
    Targets,
    Bins,
    Snapshot,
    Timestamp,
}

/// Runs `plugstore-server keys` with `args` (the first is the program name, as in
/// `std::env::args_os`). Usage errors exit with 2, failures with 1 after printing the
/// reason and what to do about it.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Not `error.exit()`: tests and the server call this in-process.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.command, UnixTime::now()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, now: UnixTime) -> anyhow::Result<()> {
    match command {
        Command::Generate {
            keys_dir,
            root_keys,
            threshold,
            root_key_dir,
        } => generate(&keys_dir, root_keys, threshold, root_key_dir, now),
        Command::Rotate {
            keys_dir,
            role,
            new_key,
            replace,
            out,
        } => rotate(&keys_dir, role, new_key, replace, out, now),
        Command::RenewRoot { keys_dir, out } => renew_root(&keys_dir, &out, now),
        Command::SignRoot { draft, key } => sign_root(&draft, &key),
        Command::FinishRoot { keys_dir, draft } => finish_root(&keys_dir, &draft),
        Command::Show { keys_dir } => show(&keys_dir, now),
    }
}

fn generate(
    keys_dir: &Path,
    count: u64,
    threshold: Option<u64>,
    root_key_dir: Option<PathBuf>,
    now: UnixTime,
) -> anyhow::Result<()> {
    let threshold = threshold.unwrap_or(count / 2 + 1);
    let root_keys_beside_online = root_key_dir.is_none();
    let root_key_dir = root_key_dir.unwrap_or_else(|| keys_dir.to_owned());
    let root_keys = (0..count)
        .map(|_| SigningKey::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let root_key_paths: Vec<PathBuf> = (1..=root_keys.len())
        .map(|n| root_key_dir.join(root_key_file_name(n)))
        .collect();
    // Refused before anything is written, so a mistake leaves no half-made store.
    if let Some(existing) = root_key_paths.iter().find(|path| path.exists()) {
        bail!(
            "{} already exists; refusing to overwrite a root key",
            existing.display()
        );
    }
    let dir = KeysDir::create(
        keys_dir,
        &root_keys.iter().collect::<Vec<_>>(),
        threshold,
        now,
    )?;
    fs::create_dir_all(&root_key_dir)
        .with_context(|| format!("creating {}", root_key_dir.display()))?;
    for (key, path) in root_keys.iter().zip(&root_key_paths) {
        write_key(key, path).with_context(|| {
            format!(
                "root 1 was signed but its root key could not be saved, so the store could never rotate a key; remove {} and run `keys generate` again",
                keys_dir.display()
            )
        })?;
    }
    let keys = dir.load()?;
    let root = &keys.current_root;
    println!(
        "root 1 written to {} (expires {})",
        dir.root_path(1).display(),
        root.expires()
    );
    println!("root keys ({threshold} of {count} must sign a new root):");
    for (key, path) in root_keys.iter().zip(&root_key_paths) {
        println!("  {}  {}", key.id(), path.display());
    }
    println!("online keys:");
    for (role, key) in [
        (OnlineRole::Targets, &keys.online.targets),
        (OnlineRole::Bins, &keys.online.bins),
        (OnlineRole::Snapshot, &keys.online.snapshot),
        (OnlineRole::Timestamp, &keys.online.timestamp),
    ] {
        println!(
            "  {role:<9}  {}  {}",
            key.id(),
            dir.key_path(role).display()
        );
    }
    if root_keys_beside_online || same_dir(&root_key_dir, keys_dir) {
        eprintln!(
            "warning: the root keys are in the server's keys directory. Whoever can read them can replace every key of the store: move them to offline media (and keep a copy) before the store goes into production."
        );
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn rotate(
    keys_dir: &Path,
    role: RotatedRole,
    new_key: Option<PathBuf>,
    replace: Option<KeyId>,
    out: Option<PathBuf>,
    now: UnixTime,
) -> anyhow::Result<()> {
    let dir = KeysDir::open(keys_dir)?;
    let (top_level, online) = match role {
        RotatedRole::Bins => {
            if out.is_some() || new_key.is_some() || replace.is_some() {
                bail!(
                    "the bins key is delegated by the targets role, not listed in the root: --role bins takes no --out, --new-key or --replace"
                );
            }
            let key = dir.generate_next_key(OnlineRole::Bins)?;
            println!(
                "new bins key {} written to {}",
                key.id(),
                dir.next_key_path(OnlineRole::Bins).display()
            );
            println!(
                "At its next start the server re-signs the targets role and every bin with it, then makes it bins.pk8 (keeping the old one as bins.pk8.old-<time>). No root key is needed."
            );
            return Ok(());
        }
        RotatedRole::Root => (TopLevelRole::Root, None),
        RotatedRole::Targets => (TopLevelRole::Targets, Some(OnlineRole::Targets)),
        RotatedRole::Snapshot => (TopLevelRole::Snapshot, Some(OnlineRole::Snapshot)),
        RotatedRole::Timestamp => (TopLevelRole::Timestamp, Some(OnlineRole::Timestamp)),
    };
    let Some(out) = out else {
        bail!("--out DRAFT.json is required: where to write the draft of the next root");
    };
    if out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a draft (it may hold signatures)",
            out.display()
        );
    }
    let new_key_path = match (online, new_key) {
        (Some(online), None) => dir.next_key_path(online),
        (None, Some(path)) => path,
        (None, None) => {
            bail!("--new-key FILE is required for --role root: where the new root key goes")
        }
        (Some(_), Some(_)) => bail!(
            "--new-key is only for --role root; the new {top_level} key goes to the keys directory"
        ),
    };
    if online.is_some() && replace.is_some() {
        bail!("--replace is only for --role root");
    }
    if new_key_path.exists() {
        bail!(
            "{} already exists: a rotation of {top_level} is under way. Finish it with `keys finish-root`, or remove that file to abandon it",
            new_key_path.display()
        );
    }

    let current = dir.root_chain()?.current;
    let key = SigningKey::generate()?;
    let draft = rotation_draft(&current, top_level, replace, key.public_key(), now)?;
    write_key(&key, &new_key_path)?;
    write_draft(&out, &draft, false)?;

    println!(
        "new {top_level} key {} written to {}",
        key.id(),
        new_key_path.display()
    );
    println!(
        "draft of root {} written to {} (unsigned)",
        draft.version(),
        out.display()
    );
    let new_root_signer = (top_level == TopLevelRole::Root).then_some(new_key_path.as_path());
    print_next_steps(keys_dir, &current, &out, new_root_signer);
    Ok(())
}

fn renew_root(keys_dir: &Path, out: &Path, now: UnixTime) -> anyhow::Result<()> {
    let dir = KeysDir::open(keys_dir)?;
    let current = dir.root_chain()?.current;
    let draft = RootDraft::successor(&current, &current.top_level_keys()?, now)?;
    write_draft(out, &draft, false)?;
    println!(
        "draft of root {} written to {} (unsigned; same keys, expires {})",
        draft.version(),
        out.display(),
        draft.expires()
    );
    print_next_steps(keys_dir, &current, out, None);
    Ok(())
}

/// The rest of a root ceremony, for the operator to pass on to the key holders.
fn print_next_steps(
    keys_dir: &Path,
    current: &VerifiedRoot,
    draft: &Path,
    new_root_signer: Option<&Path>,
) {
    println!("Next:");
    println!(
        "  1. {} holder(s) of root {}'s root keys each run `keys sign-root --draft {} --key <their root key>` on their own machine, one after the other",
        current.role_key_ids(TopLevelRole::Root).1,
        current.version(),
        draft.display()
    );
    if let Some(new_key) = new_root_signer {
        println!(
            "     and the holder of the new root key runs it with --key {}: root {} must also be signed by its own keys",
            new_key.display(),
            current.version() + 1
        );
    }
    println!(
        "  2. on the server: `keys finish-root --keys-dir {} --draft {}`",
        keys_dir.display(),
        draft.display()
    );
}

fn sign_root(draft_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let mut draft = read_draft(draft_path)?;
    let key = SigningKey::read_file(key_path)?;
    // The holder should see what they approve: a root decides every key of the store.
    println!("root {} (expires {}):", draft.version(), draft.expires());
    print_role_keys(&draft.top_level_keys()?);
    draft.sign(&key)?;
    write_draft(draft_path, &draft, true)?;
    println!("signed with {}", key.id());
    println!("signatures so far:");
    for id in draft.signed_by() {
        println!("  {id}");
    }
    Ok(())
}

fn finish_root(keys_dir: &Path, draft_path: &Path) -> anyhow::Result<()> {
    let dir = KeysDir::open(keys_dir)?;
    let draft = read_draft(draft_path)?;
    let installed = dir.install_root(&draft).map_err(|error| {
        let below_threshold = matches!(
            &error,
            crate::keys_dir::KeysDirError::Draft(RootDraftError::NotYetValid(_))
        );
        let error = anyhow::Error::new(error);
        if below_threshold {
            error.context(format!(
                "root {} needs signatures from a threshold of root {}'s root keys and of its own root keys; collect more with `keys sign-root --draft {}`",
                draft.version(),
                draft.version().saturating_sub(1),
                draft_path.display()
            ))
        } else {
            error
        }
    })?;
    let version = installed.root.version();
    if installed.already_written {
        println!("root {version} was already written; finishing the key moves");
    } else {
        println!(
            "root {version} written to {} (expires {})",
            dir.root_path(version).display(),
            installed.root.expires()
        );
    }
    for role in &installed.promoted {
        println!(
            "{role}.next.pk8 is now {role}.pk8 (the old key is {role}.pk8.old-{})",
            version - 1
        );
    }
    println!(
        "Restart the server: it publishes {version}.root.json and re-signs with the new keys."
    );
    Ok(())
}

fn show(keys_dir: &Path, now: UnixTime) -> anyhow::Result<()> {
    let dir = KeysDir::open(keys_dir)?;
    let chain = dir.root_chain()?;
    let root = &chain.current;
    println!(
        "current root: version {} (expires {}); {} root file(s), all published",
        root.version(),
        root.expires(),
        chain.roots.len(),
    );
    if root.expires() <= now {
        println!("warning: the root has expired; hosts refuse it. Sign a new root now.");
    } else if root.expires() <= now.plus(ROOT_EXPIRY_WARNING) {
        println!(
            "warning: the root expires within 60 days; gather the root key holders to sign its successor."
        );
    }
    print_role_keys(&root.top_level_keys()?);
    println!("key files in {}:", keys_dir.display());
    for role in OnlineRole::ALL {
        for path in [dir.key_path(role), dir.next_key_path(role)] {
            if !path.exists() {
                if path == dir.key_path(role) {
                    println!("  {:<20}  missing", file_name(&path));
                }
                continue;
            }
            let status = match SigningKey::read_file(&path) {
                Err(error) => format!("unusable: {error}"),
                Ok(key) => match role.top_level() {
                    Some(top_level) if root.authorizes(top_level, key.id()) => {
                        format!("{}  listed by root {}", key.id(), root.version())
                    }
                    Some(_) => format!("{}  NOT listed by root {}", key.id(), root.version()),
                    None => format!("{}  delegated by the targets role", key.id()),
                },
            };
            println!("  {:<20}  {status}", file_name(&path));
        }
    }
    let root_key_files = dir.root_key_files()?;
    if !root_key_files.is_empty() {
        println!(
            "warning: {} root key file(s) in the keys directory; in production root keys belong offline",
            root_key_files.len()
        );
    }
    Ok(())
}

fn print_role_keys(keys: &TopLevelKeys) {
    for (role, role_keys) in [
        (TopLevelRole::Root, &keys.root),
        (TopLevelRole::Targets, &keys.targets),
        (TopLevelRole::Snapshot, &keys.snapshot),
        (TopLevelRole::Timestamp, &keys.timestamp),
    ] {
        print_role(role, role_keys);
    }
}

fn print_role(role: TopLevelRole, keys: &RoleKeys) {
    println!(
        "  {:<9}  {} of {}:",
        role.to_string(),
        keys.threshold(),
        keys.keys().len()
    );
    for key in keys.keys() {
        println!("    {}", key.id());
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_draft(path: &Path) -> anyhow::Result<RootDraft> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|file| file.take(MAX_ROOT_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_ROOT_BYTES {
        bail!(
            "{} is larger than a root may be ({MAX_ROOT_BYTES} bytes)",
            path.display()
        );
    }
    RootDraft::from_json(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// Writes a draft through a temporary file and a rename, so an interrupted `sign-root` never
/// loses the signatures already collected.
fn write_draft(path: &Path, draft: &RootDraft, replace: bool) -> anyhow::Result<()> {
    let bytes = draft.to_json()?;
    let temporary = path.with_file_name(format!(".{}.tmp", file_name(path)));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    if !replace && path.exists() {
        let _ = fs::remove_file(&temporary);
        bail!(
            "{} already exists; refusing to overwrite it",
            path.display()
        );
    }
    fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}
