//! The reference controller and fabric service (docs/fleet.md).
//!
//! - [`store`]: agents, certificates, tokens, intents in files, crash-safe
//!   (group commit);
//! - [`ca`]: the CAs and their rotation;
//! - [`server`]: the channel's gRPC services over mutual TLS, agents in
//!   memory, admin operations;
//! - [`fabric`]: intents compiled for both ends, the [`fabric::SwitchDriver`]
//!   interface and its Linux driver;
//! - [`admin`]: the local admin socket (JSON lines) the CLI talks to.

pub mod admin;
pub mod ca;
pub mod fabric;
pub mod server;
pub mod store;
