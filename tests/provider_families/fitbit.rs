//! The legacy Fitbit client against the simulator: see `main.rs`.
