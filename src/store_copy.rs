//! `fitlink store copy --from sqlite://… --to postgres://…`: the way from a laptop pilot to
//! PostgreSQL. The copy itself (tables by kind, keyset batches, resume, checksums) is
//! `fitlink_shared::store::copy`; this is the command around it: its flags, the check that no
//! writer is running, and what it prints.
//!
//! No writer may change the source while it is copied. A SQLite source's writer lock is taken
//! (without waiting) and held until the copy ends, which is proof enough. The broker is asked
//! too, unless `--skip-broker-check`: a consumer on a results queue of the namespace is a
//! running writer (perhaps one already pointed at the destination), and the copy refuses. A
//! broker that does not answer is only a note when the writer lock is held; without a lock
//! (a PostgreSQL source) the copy refuses rather than guess.

use std::time::{Duration, Instant};

use clap::Args;

use fitlink_shared::broker;
use fitlink_shared::config::BrokerArgs;
use fitlink_shared::store::copy::{Comparison, Copier, Progress, Source};
use fitlink_shared::store::redact_url;

/// How long the broker may take to answer.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Progress lines of one table at most this often (plus its last one).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The database to copy: the pilot's SQLite file (`sqlite://PATH`) or a PostgreSQL
    /// database. Only read; its writer must be stopped.
    #[arg(long, env = "FITLINK_COPY_FROM", hide_env_values = true)]
    pub from: String,
    /// Where to copy it: a PostgreSQL database (`postgres://USER[:PASSWORD]@HOST[:PORT]/NAME`)
    /// or a SQLite file. Created and migrated if it does not exist. It must be empty, or an
    /// interrupted copy of the same source, which the copy then finishes.
    #[arg(long, env = "FITLINK_COPY_TO", hide_env_values = true)]
    pub to: String,
    /// Rows per destination transaction.
    #[arg(
        long,
        env = "FITLINK_COPY_BATCH_SIZE",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub batch_size: u64,
    /// Do not ask the broker whether a writer consumes the results queues (when no broker runs
    /// and every writer is known to be stopped).
    #[arg(long, env = "FITLINK_COPY_SKIP_BROKER_CHECK")]
    pub skip_broker_check: bool,
    /// The fleet's broker, asked whether a writer is running.
    #[command(flatten)]
    pub broker: BrokerArgs,
}

pub async fn run(args: CopyArgs) -> anyhow::Result<()> {
    println!("fitlink store copy");
    let source = Source::open(&args.from).await?;
    println!("  from {}", source.url());
    let locked = source.writer_lock().map(str::to_owned);
    match &locked {
        Some(lock) => println!(
            "       writer lock {lock} held: no writer can start on it until the copy ends"
        ),
        None => println!("       no writer lock on this database: every writer must be stopped"),
    }
    check_no_writer(&args, locked.is_some()).await?;
    let copier = Copier::open(source, &args.to).await?;
    println!(
        "  to   {}{}",
        copier.destination_url(),
        if copier.resuming() {
            " (holds part of this copy: resuming)"
        } else {
            ""
        }
    );

    println!("\ncopying, {} rows per transaction:", args.batch_size);
    let started = Instant::now();
    let mut copied = 0;
    for index in 0..copier.plan().len() {
        let mut last_line = Instant::now();
        copied += copier
            .copy_table(index, args.batch_size as usize, &mut |p| {
                if p.finished || last_line.elapsed() >= PROGRESS_EVERY {
                    println!("{}", progress_line(p));
                    last_line = Instant::now();
                }
            })
            .await?;
    }
    let elapsed = started.elapsed();
    println!(
        "copied {copied} rows in {:.1} s ({} rows/s)",
        elapsed.as_secs_f64(),
        rate(copied, elapsed)
    );

    println!("\nverifying: row counts and per-participant SHA-256 of every table, both sides");
    let verified = Instant::now();
    let comparison = copier.compare().await?;
    print!("{}", render_comparison(&comparison));
    println!("(verified in {:.1} s)", verified.elapsed().as_secs_f64());
    let destination = copier.destination_url().to_owned();
    copier.close().await;
    if !comparison.matches() {
        let differing: Vec<&str> = comparison
            .tables
            .iter()
            .filter(|t| !t.matches())
            .map(|t| t.table)
            .collect();
        anyhow::bail!(
            "the destination differs from the source ({}). If the source changed since an \
             interrupted copy (a writer ran in between), drop the destination and copy again",
            differing.join(", ")
        );
    }
    println!(
        "\nnext: set FITLINK_DATABASE_URL to {destination} for every role and start the writer"
    );
    Ok(())
}

fn rate(rows: u64, elapsed: Duration) -> u64 {
    (rows as f64 / elapsed.as_secs_f64().max(1e-3)) as u64
}

fn progress_line(p: &Progress<'_>) -> String {
    let percent = if p.total == 0 {
        100.0
    } else {
        100.0 * p.done as f64 / p.total as f64
    };
    let mut line = format!(
        "  {:<24} {:>10} / {:<10} rows {percent:>5.1}%",
        p.table, p.done, p.total
    );
    if p.finished && p.copied == 0 {
        line.push_str("  (nothing left to copy)");
    } else {
        line.push_str(&format!(
            "  {:>9} rows/s{}",
            rate(p.copied, p.elapsed),
            if p.finished {
                format!(", {:.1} s", p.elapsed.as_secs_f64())
            } else {
                String::new()
            }
        ));
    }
    line
}

/// The comparison, one line per table, then the verdict.
pub fn render_comparison(c: &Comparison) -> String {
    let mut out = format!(
        "  {:<24} {:>10} {:>12} {:>13}  result\n",
        "table", "source", "destination", "participants"
    );
    for t in &c.tables {
        let result = if t.matches() {
            "same".to_owned()
        } else if t.differing.is_empty() {
            "DIFFERENT row counts".to_owned()
        } else {
            let some: Vec<&str> = t
                .differing
                .iter()
                .take(5)
                .map(|p| if p.is_empty() { "(all rows)" } else { p })
                .collect();
            format!(
                "DIFFERENT for {} participant(s): {}",
                t.differing.len(),
                some.join(", ")
            )
        };
        out.push_str(&format!(
            "  {:<24} {:>10} {:>12} {:>13}  {result}\n",
            t.table, t.source_rows, t.destination_rows, t.participants
        ));
    }
    if c.matches() {
        out.push_str(&format!(
            "identical: {} tables, {} rows, digest {}\n",
            c.tables.len(),
            c.source_rows(),
            c.source_digest
        ));
    } else {
        out.push_str(&format!(
            "MISMATCH: source digest {}, destination digest {}\n",
            c.source_digest, c.destination_digest
        ));
    }
    out
}

/// Refuses if a writer consumes a results queue of the fleet (see the module's doc).
async fn check_no_writer(args: &CopyArgs, writer_lock_held: bool) -> anyhow::Result<()> {
    if args.skip_broker_check {
        println!("       broker not asked (--skip-broker-check)");
        return Ok(());
    }
    let url = redact_url(args.broker.amqp_url.expose());
    let namespace = &args.broker.namespace;
    let connected =
        tokio::time::timeout(BROKER_TIMEOUT, broker::connect(&args.broker, "store-copy")).await;
    let conn = match connected {
        Ok(Ok(conn)) => conn,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {} s", BROKER_TIMEOUT.as_secs()),
            };
            if writer_lock_held {
                println!(
                    "       broker {url} not reachable ({why}); going on: the writer lock keeps \
                     writers off the source"
                );
                return Ok(());
            }
            anyhow::bail!(
                "cannot ask the broker at {url} whether a writer is running ({why}): start the \
                 broker, or make sure every writer is stopped and pass --skip-broker-check"
            );
        }
    };
    let mut busy = Vec::new();
    let mut failure = None;
    for queue in &args.broker.topology().results {
        match broker::queue_consumers_on_fresh_channel(&conn, queue).await {
            Ok(Some(n)) if n > 0 => busy.push(format!("{queue} has {n} consumer(s)")),
            Ok(_) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let _ = conn.close(200, "done".into()).await;
    if let Some(e) = failure {
        anyhow::bail!("asking the broker at {url} whether a writer is running: {e}");
    }
    if !busy.is_empty() {
        anyhow::bail!(
            "a writer is running: on the broker {url}, {}. Stop every `fitlink writer` of \
             namespace {namespace:?}, then run the copy again",
            busy.join(", ")
        );
    }
    println!("       broker {url}: no writer consumes the results of namespace {namespace:?}");
    Ok(())
}
