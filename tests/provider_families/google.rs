//! The Google Health client against the simulator: see `main.rs`.
