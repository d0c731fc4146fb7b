//! plugstore's TUF metadata (ADR 0004): target naming and hash bins, our custom fields, keys
//! and roots, an incremental producer for the server, and a lazy verifying client for hosts.
//!
//! tough 0.24 provides the schema types and key parsing. Signing, the threshold check, the
//! producer and the client's update steps are ours, and synchronous: the server and the host
//! client call them from whatever runtime they have (or none).
//!
//! - [`layout`]: target paths, shards and bins;
//! - [`custom`]: the `custom.plugstore` fields of a target;
//! - [`keys`]: P-256 signing keys, key ids, role key sets;
//! - [`root`]: root drafts, offline signing, root chains;
//! - [`repository`]: the producer;
//! - [`client`]: the verification pipeline and target checks.

pub mod client;
pub mod custom;
mod delegations;
pub mod digest;
mod envelope;
pub mod error;
pub mod keys;
pub mod layout;
pub mod repository;
pub mod root;
pub mod time;

pub use envelope::sign_metadata_json;
