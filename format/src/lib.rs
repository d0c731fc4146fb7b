//! The plugstore package format, shared by the server, the scanner, the CLI and the host client.
//!
//! No async and no I/O beyond `Read`/`Write`: everything here is a pure function of its inputs,
//! so the server and the offline `plugstore verify` run exactly the same checks.
//!
//! - [`package`]: the deterministic tar (builder and strict reader) and its limits;
//! - [`manifest`]: the `plugin.toml` manifest;
//! - [`digest`]: the package identity (SHA-256 of its bytes);
//! - [`signing`]: the canonical signing payload, the signature envelope, signature checks;
//! - [`certs`]: X.509 chain validation and the binding of a certificate to a publisher.

pub mod abi;
pub mod certs;
pub mod delta;
pub mod digest;
pub mod limits;
pub mod manifest;
pub mod package;
pub mod signing;
