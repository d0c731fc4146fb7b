//! plugstore's TUF metadata (ADR 0004): target naming and hash bins, our custom fields, keys
//! and roots, an incremental producer for the server, and a lazy verifying client for hosts.
//!
//! tough 0.24 provides the schema types (roles, keys, key ids) and canonical JSON comes from
//! olpc-cjson, as tough uses it. Signing, the threshold check, the producer and the client's
//! update steps are ours, and synchronous: the server and the host client call them from
//! whatever runtime they have (or none). Three places deliberately do not use tough's code:
//! signatures are counted per distinct public key over the `signed` object as received (see
//! `envelope`), the top-level targets role is read with a small type of our own (tough's
//! compiles 8192 glob patterns into regexes), and files are written as compact JSON with
//! sorted keys.
//!
//! - [`layout`]: target paths, shards and bins;
//! - [`custom`]: the `custom.plugstore` fields of a target;
//! - [`keys`]: P-256 signing keys, key ids, role key sets;
//! - [`keys_dir`]: a store's keys directory (online keys, every root) and rotations;
//! - [`root`]: root drafts, offline signing, root chains;
//! - [`repository`]: the producer;
//! - [`client`]: the verification pipeline and target checks;
//! - `cli` (feature `cli`): `plugstore-server keys …`;
//! - [`error`]: why metadata or a target was refused;
//! - [`digest`], [`time`]: SHA-256 digests, Unix time and the role lifetimes.

#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod custom;
mod delegations;
pub mod digest;
mod envelope;
pub mod error;
pub mod keys;
pub mod keys_dir;
pub mod layout;
pub mod repository;
pub mod root;
pub mod time;

pub use envelope::sign_metadata_json;
