//! `publish`, `yank`, `unyank`, `rollout` and `info`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{Manifest, PluginId};
use plugstore_format::signing::verify_signature;
use serde::Serialize;
use tokio::io::AsyncReadExt as _;
use tokio_util::io::ReaderStream;

use crate::api::{PluginView, Rollout, StateChange, VersionView, upload_prefix};
use crate::commands::package::{
    LeafChecks, SignerFiles, package_builder, payload_of, read_envelope, read_package_file, sign,
    write_package_to,
};
use crate::context::{Context, Output};
use crate::hints::{explain, hinted};

/// Bytes read from the package file per upload chunk.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// A package on disk, ready to upload: a file given by the user, or a temporary file packed
/// from a directory (deleted when this is dropped).
struct PreparedPackage {
    path: PathBuf,
    _temporary: Option<tempfile::TempPath>,
    manifest: Manifest,
    digest: PackageDigest,
    length: u64,
}

fn prepare(path: &Path) -> anyhow::Result<PreparedPackage> {
    if path.is_dir() {
        let builder = package_builder(path)?;
        let temp = tempfile::Builder::new()
            .prefix(".plugstore-upload-")
            .suffix(".tar")
            .tempfile()
            .context("creating a temporary file for the package")?;
        let (digest, length) = write_package_to(&builder, temp.as_file())?;
        Ok(PreparedPackage {
            path: temp.path().to_owned(),
            _temporary: Some(temp.into_temp_path()),
            manifest: builder.manifest().clone(),
            digest,
            length,
        })
    } else {
        let contents = read_package_file(path)?;
        Ok(PreparedPackage {
            path: path.to_owned(),
            _temporary: None,
            manifest: contents.manifest,
            digest: contents.digest,
            length: contents.length,
        })
    }
}

/// Options of `publish`.
#[derive(Debug)]
pub struct PublishRequest {
    /// A plugin directory or a package file.
    pub path: PathBuf,
    /// Key, certificate and algorithm for signing.
    pub signer: SignerFiles,
    /// A ready signature envelope instead of signing here.
    pub signature: Option<PathBuf>,
    /// The publisher the upload must go to (a guard for scripts).
    pub publisher: Option<String>,
}

/// What `publish` did, for `--json`.
#[derive(Debug, Serialize)]
struct PublishOutcome {
    /// `false` when the same bytes were already published (a retry).
    created: bool,
    plugin: String,
    #[serde(flatten)]
    version: VersionView,
    url: String,
}

/// `plugstore publish DIR|PKG`.
pub async fn publish(ctx: &Context, request: PublishRequest) -> anyhow::Result<()> {
    // A missing login stops the command before any work; the session itself is renewed
    // only after the local checks, so a refused package costs no round trip.
    ctx.ensure_logged_in()?;
    let path = request.path.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&path)).await??;
    let id = prepared.manifest.id().clone();
    let version = prepared.manifest.version().to_string();
    let publisher = request
        .publisher
        .as_deref()
        .unwrap_or(id.publisher())
        .to_owned();
    if publisher != id.publisher() {
        return Err(hinted(
            anyhow::anyhow!(
                "plugin.toml does not match the upload: plugin.toml says id `{id}`, but this upload is for publisher `{publisher}` (code: id-mismatch)"
            ),
            format!(
                "set `id = \"{publisher}/{}\"` in plugin.toml, or leave out --publisher to publish as `{}`",
                id.name(),
                id.publisher()
            ),
        ));
    }
    let payload = payload_of(&prepared.manifest, prepared.digest)?;
    let envelope = match &request.signature {
        Some(signature) => {
            let envelope = read_envelope(signature)?;
            verify_signature(&envelope, &payload, &envelope.certificate_chain[0]).map_err(|e| {
                hinted(
                    anyhow::anyhow!(
                        "{} is not a signature of {id} {version} with digest {}: {e}",
                        signature.display(),
                        prepared.digest
                    ),
                    "sign this exact package with `plugstore sign PKG`, or let `plugstore publish` sign it",
                )
            })?;
            envelope
        }
        None => sign(
            Some(&ctx.config),
            &request.signer,
            &payload,
            LeafChecks::ValidityOnly,
        )?,
    };
    let envelope_json = envelope.to_json()?;
    let auth = ctx.authenticate().await?;
    let hint_context = auth.hint_context(Some(&publisher));
    let prefix = upload_prefix(envelope_json.as_bytes())?;
    let content_length = prefix.len() as u64 + prepared.length;

    let file = tokio::fs::File::open(&prepared.path)
        .await
        .with_context(|| format!("opening {}", prepared.path.display()))?;
    let progress = upload_progress(ctx.out, prepared.length);
    let counted = progress.clone();
    let finished = progress.clone();
    // The file is read as it is sent, never held whole; `take` keeps the body at the length
    // announced even if the file grows meanwhile.
    let package = ReaderStream::with_capacity(file.take(prepared.length), UPLOAD_CHUNK)
        .inspect_ok(move |chunk| counted.inc(chunk.len() as u64));
    let end = futures_util::stream::once(async move {
        finished.set_message("verifying");
    })
    .filter_map(|()| async { None::<std::io::Result<Bytes>> });
    let body = futures_util::stream::once(async move { Ok(Bytes::from(prefix)) })
        .chain(package)
        .chain(end);
    let result = ctx
        .api
        .publish(
            &auth.bearer,
            &publisher,
            id.name(),
            &version,
            reqwest::Body::wrap_stream(body),
            content_length,
        )
        .await;
    progress.finish_and_clear();
    let (created, published) = result.map_err(|e| explain(e, hint_context))?;
    let outcome = PublishOutcome {
        created,
        plugin: published.plugin,
        version: published.version,
        url: published.url,
    };
    ctx.out.print(&outcome, || {
        let headline = if outcome.created {
            format!(
                "published {} {} (state: {})",
                outcome.plugin, outcome.version.version, outcome.version.state
            )
        } else {
            format!(
                "already published (same bytes): {} {} (state: {})",
                outcome.plugin, outcome.version.version, outcome.version.state
            )
        };
        let mut text = format!("{headline}\n  {}", outcome.url);
        if outcome.version.state == "pending_review" {
            text.push_str("\nA reviewer must approve this version before it is offered to users.");
        }
        text
    })
}

/// A progress bar on standard error, hidden for `--json` or when standard error is not a
/// terminal.
fn upload_progress(out: Output, length: u64) -> ProgressBar {
    if out.is_json() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("uploading");
    bar
}

/// `publisher/name@version`, as `yank` and `unyank` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    /// The plugin.
    pub id: PluginId,
    /// The version.
    pub version: semver::Version,
}

impl FromStr for VersionRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (id, version) = text
            .split_once('@')
            .ok_or_else(|| format!("`{text}` is not of the form publisher/name@version"))?;
        let id = id.parse::<PluginId>().map_err(|e| e.to_string())?;
        let version = semver::Version::parse(version)
            .map_err(|e| format!("version `{version}` is not semver: {e}"))?;
        Ok(Self { id, version })
    }
}

/// `plugstore yank` / `plugstore unyank`.
pub async fn change_state(
    ctx: &Context,
    target: &VersionRef,
    action: StateChange,
    reason: &str,
) -> anyhow::Result<()> {
    let auth = ctx.authenticate().await?;
    let version = ctx
        .api
        .change_state(
            &auth.bearer,
            target.id.publisher(),
            target.id.name(),
            &target.version.to_string(),
            action,
            reason,
        )
        .await
        .map_err(|e| explain(e, auth.hint_context(Some(target.id.publisher()))))?;
    let verb = match action {
        StateChange::Yank => "yanked",
        StateChange::Unyank => "unyanked",
    };
    ctx.out.print(&version, || {
        let mut text = format!(
            "{verb} {} {} (state: {})",
            target.id, version.version, version.state
        );
        if action == StateChange::Yank {
            text.push_str(
                "\nIt stays downloadable by digest but is no longer offered as an update.",
            );
        }
        text
    })
}

/// `plugstore rollout`.
pub async fn set_rollout(
    ctx: &Context,
    target: &VersionRef,
    rollout: Rollout,
) -> anyhow::Result<()> {
    let auth = ctx.authenticate().await?;
    let set = ctx
        .api
        .set_rollout(
            &auth.bearer,
            target.id.publisher(),
            target.id.name(),
            &target.version.to_string(),
            rollout,
        )
        .await
        .map_err(|e| explain(e, auth.hint_context(Some(target.id.publisher()))))?;
    ctx.out.print(&set, || {
        let who = if set.paused {
            format!("nobody new (paused at {}%)", set.percent)
        } else {
            format!("{}% of hosts", set.percent)
        };
        format!(
            "{} {}: the update is offered to {who}\nHosts that installed it keep it; it stays in the signed metadata either way.",
            target.id, target.version
        )
    })
}

/// `info --json`.
#[derive(Debug, Serialize)]
struct PluginInfo {
    plugin: PluginView,
    versions: Vec<VersionView>,
}

/// `plugstore info publisher/name`.
pub async fn info(ctx: &Context, id: &PluginId) -> anyhow::Result<()> {
    let context = crate::hints::HintContext {
        publisher: Some(id.publisher()),
        username: None,
    };
    let plugin = ctx
        .api
        .plugin(id.publisher(), id.name())
        .await
        .map_err(|e| explain(e, context))?;
    let versions = ctx
        .api
        .versions(id.publisher(), id.name())
        .await
        .map_err(|e| explain(e, context))?;
    let info = PluginInfo { plugin, versions };
    ctx.out.print(&info, || {
        let plugin = &info.plugin;
        let mut text = format!("{}  {}\n", plugin.id, plugin.description);
        text.push_str(&format!(
            "latest: {}\n",
            plugin
                .latest_version
                .as_deref()
                .unwrap_or("(none published)")
        ));
        if info.versions.is_empty() {
            text.push_str("no public versions\n");
        }
        for version in &info.versions {
            let rollout = match version.rollout {
                Some(Rollout {
                    paused: true,
                    percent,
                }) => format!("  rollout paused at {percent}%"),
                Some(Rollout { percent, .. }) if percent < 100 => format!("  rollout {percent}%"),
                _ => String::new(),
            };
            text.push_str(&format!(
                "  {:<12} {:<15} {:>10} bytes  {}  {}{rollout}\n",
                version.version,
                version.state,
                version.package_size,
                version.package_digest,
                version.created_at
            ));
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_refs_parse_and_explain_mistakes() {
        let parsed: VersionRef = "acme/hello@1.2.3-rc.1".parse().unwrap();
        assert_eq!(parsed.id.to_string(), "acme/hello");
        assert_eq!(parsed.version.to_string(), "1.2.3-rc.1");
        assert!(
            "acme/hello"
                .parse::<VersionRef>()
                .unwrap_err()
                .contains("publisher/name@version")
        );
        assert!("acme/hello@one".parse::<VersionRef>().is_err());
        assert!("acme@1.0.0".parse::<VersionRef>().is_err());
    }
}
