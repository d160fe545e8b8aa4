//! The dispatcher: everything in the fleet that creates work.
//!
//! - [`run`] (`fitlink dispatcher`): the schedule, which asks for a sync of every participant
//!   that is due;
//! - [`enqueue`] (`fitlink enqueue`): an operator asks for a sync now;
//! - [`import_participants`] (`fitlink participants import`): a CSV file of newly consented
//!   participants;
//! - [`dlq_list`] / [`dlq_replay`] (`fitlink dlq …`): the jobs that exhausted their retries;
//! - [`portal`] (served by `fitlink dispatcher --portal-addr`): the participant consent flow and
//!   the provider webhooks; [`invite`] (`fitlink invite`) issues the links it accepts;
//! - [`withdraw`] (`fitlink participants withdraw`): a participant leaves the study;
//! - [`rekey`] (`fitlink credentials rekey`): every stored credential sealed again with the
//!   current token key, through the writer;
//! - [`console`] (`fitlink console`, a role of its own): the coordinators' web view of the
//!   cohort, whose actions are the commands above.
//!
//! What this crate must not do: write the database. It opens it read-only (SQLite `query_only`,
//! PostgreSQL `default_transaction_read_only`) and turns every change it wants into a [`WriterCommand`](fitlink_shared::messages::WriterCommand)
//! on the results queue. The writer alone applies changes, and it alone grants a sync
//! (`RequestSync`), because only the process that owns the in-flight claims can keep "one job in
//! flight per participant" true. A request the writer refuses costs one message; a second
//! process deciding would cost a duplicate job.

pub mod console;
pub mod dlq;
pub mod enqueue;
mod identity;
pub mod import;
pub mod invite;
mod keycheck;
mod observe;
mod outbox;
pub mod portal;
mod progress;
pub mod rekey;
pub mod schedule;
pub mod withdraw;

pub use console::ConsoleArgs;
pub use dlq::{
    DeadLetter, ReplayReport, ReplaySelection, Replayed, SkippedDeadLetter, dlq_list, dlq_replay,
    parse_job_ids, render_dead_letters,
};
pub use enqueue::{EnqueueReport, EnqueuedJob, UnknownParticipants, enqueue};
pub use import::{
    ImportError, ImportReport, ImportWait, MAX_IMPORT_BYTES, RowProblem, import_participants,
    parse_import, read_roster,
};
pub use invite::{InviteArgs, InviteReport, invite};
pub use portal::PortalArgs;
pub use rekey::{RekeyArgs, RekeyReport, rekey};
pub use schedule::{
    DispatcherArgs, DueParticipant, RowVersion, due_participants, idle_grants, run,
};
pub use withdraw::{WithdrawArgs, WithdrawReport, withdraw};
