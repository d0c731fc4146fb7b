//! `plugstore-client`: what a host application embeds to keep its plugins current.
//!
//! A host builds one [`Client`] with [`ClientBuilder`] (the store's URL, the pinned TUF root,
//! the store's CA certificate, the install directory and the host's id, version and
//! platform), then runs the update cycle: [`Client::check_updates`] asks the store's API what
//! is new and checks every answer against the store's signed TUF metadata,
//! [`Client::install_update`] downloads (by delta patch when it can), verifies the package's
//! signed hash and its developer signature and installs it atomically, and
//! [`Client::rollback`] returns to the previous version. Revoked versions are disabled, never
//! silently deleted. See `docs/src/host-integration.md`.
//!
//! - [`client`]: the builder, the client and its errors;
//! - [`updates`]: update offers, refusals and revocations;
//! - [`developer`]: the developer-signature step;
//! - [`install`]: the install directory and its atomic updates;
//! - [`download`]: the resumable, length-capped, rate-guarded download of one target;
//! - [`delta`]: packages by patch with a fallback to the full download.

pub mod client;
pub mod delta;
pub mod developer;
pub mod download;
pub mod install;
mod metadata;
pub mod updates;

pub use client::{Client, ClientBuilder, ClientError, Installed};
pub use metadata::RestoreError;
pub use updates::{
    AwaitingMetadata, Channel, HostApp, Refusal, RefusalReason, Revocation, UpdateCheck,
    VerifiedBlob, VerifiedPackage, VerifiedUpdate,
};
