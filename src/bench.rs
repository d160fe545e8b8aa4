//! `fitlink bench`: throughput figures, measured on the real parts (RabbitMQ, SQLite or
//! PostgreSQL, the simulator over HTTP), never asserted in tests.

mod console;
mod daily_mix;
mod webhooks;
mod writer;

use clap::Subcommand;

use crate::demo::{self, DemoArgs};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Writer throughput: pre-filled results queues drained by writer processes, beside the
    /// same rows loaded in process and the database's own ceiling (bare INSERT / COPY).
    Writer(writer::WriterBench),
    /// Fleet throughput in participant-days/s against the simulator.
    Fleet(DemoArgs),
    /// Push-driven sync: device sync → data stored, through the provider's webhooks.
    Webhooks(webhooks::WebhookBench),
    /// The console's cohort page for a generated cohort, beside its queries alone, and while
    /// the writer commits at full speed.
    Console(console::ConsoleBench),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Writer(args) => writer::run(args).await,
        BenchCommand::Webhooks(args) => webhooks::run(args).await,
        BenchCommand::Console(args) => console::run(args).await,
        BenchCommand::Fleet(args) => {
            let run = demo::run_fleet(&args).await?;
            println!(
                "fleet: {} × {} participants × {} days, {} workers × {} jobs, latency {} ms: {:.1} participant-days/s ({:.1} s); {:.1} provider requests per participant-day; worker peak RSS {} MiB",
                args.provider,
                args.participants,
                args.days,
                args.workers,
                args.concurrency,
                args.latency_ms,
                run.participant_days / run.elapsed.as_secs_f64(),
                run.elapsed.as_secs_f64(),
                run.provider_requests as f64 / run.participant_days.max(1.0),
                run.worker_peak_rss_kib
                    .iter()
                    .map(|k| (k / 1024).to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            );
            Ok(())
        }
    }
}
