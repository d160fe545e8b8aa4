//! Common code of the fitlink fleet: the domain's types, the messages on the queues, the broker
//! topology, the database schema, configuration, token sealing, and the provider clients.
//!
//! Roles (`dispatcher`, `worker`, `writer`) depend on this crate and never on each other.

pub mod broker;
pub mod compliance;
pub mod config;
pub mod coverage;
pub mod domain;
pub mod errors;
pub mod families;
pub mod faults;
pub mod linkage;
pub mod messages;
pub mod provider;
pub mod replies;
pub mod secret;
pub mod store;
pub mod telemetry;
