//! One module per area of the command line.

pub mod account;
pub mod keys;
pub mod package;
pub mod publish;
pub mod publisher;
