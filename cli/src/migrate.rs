//! `tilefarm migrate`: bring the job store's schema up to date.

use anyhow::{Context, Result};
use clap::Args;
use tilefarm_queue::{MIGRATOR, PgStore};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of the job store, e.g. postgres://user@host/tilefarm.
    #[arg(long, env = "TILEFARM_DATABASE_URL")]
    pub database: String,
}

pub fn run(args: MigrateArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    runtime.block_on(async {
        let store = PgStore::connect(&args.database).await.with_context(|| {
            format!(
                "cannot connect to the job store at {}",
                redact(&args.database)
            )
        })?;
        store.migrate().await.context("the migrations failed")?;
        println!(
            "job store schema is up to date ({} migrations)",
            MIGRATOR.iter().count()
        );
        Ok(())
    })
}

/// The URL without its password, fit for a message.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
