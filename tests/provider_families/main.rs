//! Each provider client against the simulator, in process: every daily family a client reads
//! from the simulator's wire format must equal the simulator's ground truth (`truth::*`), with
//! no broker and no store in between. A wrong field mapping, a day off by one, a level lost at
//! a DST change or a request too many shows here first, named by participant and day.
//!
//! `sim.rs` starts the simulator on 127.0.0.1:0; `google.rs` and `fitbit.rs` hold one
//! provider's comparisons each.

mod fitbit;
mod google;
mod sim;
