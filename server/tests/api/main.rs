//! API tests: one binary (linking once), modules by area. Every database test runs on the
//! embedded stack (SQLite + disk) and the scaled stack (PostgreSQL + S3).

mod harness;

mod auth;
mod blob_gc;
mod blobs;
mod certificates;
mod deltas;
mod hygiene;
mod matrix;
mod plugins;
mod publish;
mod publishers;
mod release_metadata;
mod review;
mod scanning;
mod tokens;
mod updates;
