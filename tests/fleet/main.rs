//! Fleet tests: the `fitlink` roles as separate processes (simulator, writer, ≥ 2 workers,
//! dispatcher) against the real local RabbitMQ and a real SQLite file or PostgreSQL database,
//! checked against the simulator's ground truth.

mod harness;
mod webdriver;

mod bad_input;
mod bench;
mod browser;
mod chaos;
mod console;
mod crashes;
mod families;
mod fault_points;
mod faults;
mod gauges;
mod import;
mod legacy;
mod linkage;
mod rate_limits;
mod rekey;
mod store_copy;
mod sync;
mod tls;
mod writers;
