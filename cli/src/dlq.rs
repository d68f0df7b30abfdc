//! `tilefarm dlq`: the farm's dead letters (tasks that failed for good, each
//! of which failed its job), and putting them back to work once the cause is
//! fixed.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tilefarm_queue::{Broker, DEAD_QUEUE, DeadLetter, JobStore, Replayed};
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

/// The farm's broker and job store.
#[derive(Debug, Args)]
struct Servers {
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, env = "TILEFARM_AMQP_URL")]
    amqp: String,
    /// PostgreSQL URL of the job store, e.g. postgres://user@host/tilefarm.
    #[arg(long, env = "TILEFARM_DATABASE_URL")]
    database: String,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the dead-lettered tasks: task, job, reason, attempts, first and last failure.
    List {
        #[command(flatten)]
        servers: Servers,
        /// Only those of this job.
        #[arg(long, value_name = "ID")]
        job: Option<Uuid>,
        /// Print them as a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered tasks back to work with a fresh attempt count: a job a
    /// dead letter failed runs again, and its tiles done so far still count.
    Replay {
        #[command(flatten)]
        servers: Servers,
        #[command(flatten)]
        which: Which,
    },
}

/// Which dead letters to replay.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Which {
    /// Those of this job.
    #[arg(long, value_name = "ID")]
    job: Option<Uuid>,
    /// All of them.
    #[arg(long)]
    all: bool,
}

pub fn run(args: DlqArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    runtime.block_on(async {
        match args.command {
            DlqCommand::List { servers, job, json } => list(&servers, job, json).await,
            DlqCommand::Replay { servers, which } => replay(&servers, which.job).await,
        }
    })
}

async fn connect(servers: &Servers) -> Result<(JobStore, Broker)> {
    let store = crate::migrate::connect_store(&servers.database).await?;
    let broker = Broker::connect_existing(&servers.amqp)
        .await
        .context("cannot connect to RabbitMQ")?;
    Ok((store, broker))
}

async fn list(servers: &Servers, job: Option<Uuid>, json: bool) -> Result<()> {
    let (store, broker) = connect(servers).await?;
    let letters = store
        .dead_letters(job)
        .await
        .context("cannot read the dead letters (has `tilefarm migrate` run?)")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(());
    }
    let queued = broker
        .depth(DEAD_QUEUE)
        .await
        .with_context(|| format!("cannot read the depth of {DEAD_QUEUE}"))?;
    print!("{}", table(&letters));
    println!(
        "{} dead-lettered task(s); {queued} message(s) in {DEAD_QUEUE}",
        letters.len()
    );
    Ok(())
}

/// The dead letters as a table for a terminal.
fn table(letters: &[DeadLetter]) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    };
    let mut rows = vec![[
        "TASK".to_string(),
        "JOB".into(),
        "KIND".into(),
        "ATTEMPTS".into(),
        "FIRST FAILURE".into(),
        "LAST FAILURE".into(),
        "REASON".into(),
    ]];
    for l in letters {
        let kind = match l.metatile {
            Some((z, x, y, _)) => format!("{} {z}/{x}/{y}", l.kind),
            None => l.kind.to_string(),
        };
        rows.push([
            l.task_id.to_string(),
            l.job_id.to_string(),
            kind,
            l.attempts.to_string(),
            time(l.first_failure),
            time(l.last_failure),
            l.reason.replace('\n', " "),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (cell, &width) in row.iter().zip(&widths) {
            let _ = write!(out, "{cell:width$}  ");
        }
        let _ = writeln!(out, "{}", row[6]);
    }
    out
}

async fn replay(servers: &Servers, job: Option<Uuid>) -> Result<()> {
    let (store, broker) = connect(servers).await?;
    let replayed = store
        .replay_dead_letters(job)
        .await
        .context("cannot replay the dead letters")?;
    if replayed.is_empty() {
        match job {
            Some(id) => println!("job {id} has no dead letters"),
            None => println!("there are no dead letters"),
        }
    }
    for r in &replayed {
        println!("{}", describe(r));
    }
    // The replayed tasks' letters leave the dead-letter queue, as do any left
    // there by an earlier replay that stopped half way.
    let (removed, left) = broker
        .sweep_dead_letters(|letters| {
            let store = store.clone();
            async move { Ok(store.stale_letters(&letters).await?) }
        })
        .await
        .with_context(|| format!("the replay is done, but {DEAD_QUEUE} could not be swept"))?;
    println!("removed {removed} replayed message(s) from {DEAD_QUEUE}; {left} left");
    if replayed.iter().any(|r| r.skipped.is_some()) {
        anyhow::bail!("some dead letters were not replayed (see above)");
    }
    Ok(())
}

fn describe(r: &Replayed) -> String {
    match &r.skipped {
        Some(why) => format!(
            "job {}: {} dead letter(s) not replayed: {why}",
            r.job_id, r.dead_letters
        ),
        None => format!(
            "job {}: {} dead letter(s) replayed, {} task(s) queued",
            r.job_id, r.dead_letters, r.queued
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_its_columns() {
        let letter = DeadLetter {
            task_id: Uuid::nil(),
            job_id: Uuid::max(),
            layer_id: Uuid::nil(),
            kind: tilefarm_queue::TaskKind::Render,
            metatile: Some((3, 1, 2, 8)),
            reason: "a task failed 4 times;\nthe last error: gone".into(),
            attempts: 4,
            first_failure: None,
            last_failure: "2026-12-02T01:02:03Z".parse().ok(),
            dead_at: "2026-12-02T01:02:03Z".parse().unwrap(),
            replays: 0,
            job_state: tilefarm_queue::JobState::Failed,
        };
        let text = table(&[letter]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("TASK "), "{text}");
        assert!(lines[1].contains("render 3/1/2"), "{text}");
        assert!(lines[1].contains("2026-12-02 01:02:03"), "{text}");
        assert!(
            lines[1].ends_with("a task failed 4 times; the last error: gone"),
            "{text}"
        );
        assert_eq!(
            lines[0].find("REASON"),
            lines[1].find("a task failed"),
            "{text}"
        );
    }
}
