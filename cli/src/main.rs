//! `tilefarm`: the command-line front door.
#![forbid(unsafe_code)]

mod dlq;
mod farm;
mod migrate;
mod progress;
mod render;
mod sweep;
mod upload;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "tilefarm", version, about = "Raster tile pre-render farm")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "TILEFARM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render a GeoJSON file into a PNG tile pyramid.
    Render(render::RenderArgs),
    /// Apply the job store's database migrations (safe to run again).
    Migrate(migrate::MigrateArgs),
    /// Serve the HTTP API, and run tasks too unless --api-only.
    Serve(Box<farm::ServeArgs>),
    /// Run tasks from the queue until SIGTERM, then finish those in hand.
    Worker(Box<farm::WorkerCmdArgs>),
    /// Upload a GeoJSON file to a tilefarm server and follow its job.
    Upload(upload::UploadArgs),
    /// Send an edit of a layer's features to a tilefarm server and follow its job.
    Edit(upload::EditArgs),
    /// List the farm's dead-lettered tasks, or put them back to work.
    Dlq(dlq::DlqArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tiny_skia=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Pretty => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
    let result = match cli.command {
        Command::Render(args) => render::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Serve(args) => farm::serve(*args),
        Command::Worker(args) => farm::worker(*args),
        Command::Upload(args) => upload::run(args),
        Command::Edit(args) => upload::run_edit(args),
        Command::Dlq(args) => dlq::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
