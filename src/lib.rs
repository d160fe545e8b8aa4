//! The `fitlink` operator binary's library: the command line, the status report, the
//! completeness ledger's printout (`coverage`), the local fleet harness (demo, benchmarks,
//! integration tests). Roles live in their own crates: `fitlink-dispatcher`, `fitlink-worker`,
//! `fitlink-writer`, `fitlink-simulator`.

pub mod bench;
pub mod chaos;
pub mod checker;
pub mod cli;
pub mod coverage;
pub mod demo;
pub mod fleet;
pub mod status;
pub mod store_copy;
