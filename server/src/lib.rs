//! plugstore-server: the registry's REST service.
//!
//! [`router::build`] wires every route; handlers live in [`controllers`], grouped by what they
//! act on; [`auth`] decides who may do what; [`blobs`] stores package bytes by SHA-256.

pub mod app;
pub mod auth;
pub mod blob_gc;
pub mod blobs;
pub mod ca;
pub mod catalogue;
pub mod check_request;
pub mod config;
pub mod controllers;
pub mod db;
pub mod deltas;
pub mod error;
pub mod host_range;
pub mod http;
pub mod lingering_close;
pub mod metrics;
pub mod names;
pub mod rate_limit;
pub mod release_metadata;
pub mod releases;
pub mod router;
pub mod secrets;
pub mod send_timeout;
pub mod serve;
pub mod signing;
pub mod upload;

pub use app::AppState;
pub use config::Settings;
