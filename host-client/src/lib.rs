//! `plugstore-client`: what a host application embeds to keep its plugins current.
//!
//! Built so far: [`download`], the resumable, length-capped, rate-guarded download of one
//! target whose length and SHA-256 come from signed metadata, and [`delta`], getting a
//! package by patch with a fallback to the full download. The TUF verification it sits
//! behind is the `plugstore-tuf` crate; the update check, install and rollback come next
//! (issue 5).

pub mod delta;
pub mod download;
