//! `tilefarm migrate`: bring the job store's schema up to date, creating its
//! database first when the server does not have it yet.

use anyhow::{Context, Result, bail};
use clap::Args;
use sqlx::Connection;
use tilefarm_queue::{JobStore, MIGRATOR};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of the job store, e.g. postgres://user@host/tilefarm. The
    /// database is created when it does not exist (which needs the CREATEDB
    /// privilege); the schema is then brought up to date.
    #[arg(long, env = "TILEFARM_DATABASE_URL")]
    pub database: String,
}

pub fn run(args: MigrateArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    runtime.block_on(async {
        let target = Target::parse(&args.database)?;
        if create_database(&target).await? {
            println!(
                "created the database \"{}\" on {}",
                target.name, target.server
            );
        }
        let store = connect_store(&args.database).await?;
        store.migrate().await.context("the migrations failed")?;
        println!(
            "job store schema is up to date ({} migrations)",
            MIGRATOR.iter().count()
        );
        Ok(())
    })
}

/// Connects to the job store, saying plainly when its database is missing
/// and what creates it.
pub async fn connect_store(url: &str) -> Result<JobStore> {
    match JobStore::connect_postgres(url).await {
        Ok(store) => Ok(store),
        Err(tilefarm_queue::StoreError::Database(e))
            if code(&e).as_deref() == Some(UNDEFINED_DATABASE) =>
        {
            let name = Target::parse(url).map_or_else(|_| "?".into(), |t| t.name);
            bail!(
                "the job store's database \"{name}\" does not exist on {}: create it and its \
                 schema with `tilefarm migrate --database URL`",
                redact(url)
            )
        }
        Err(tilefarm_queue::StoreError::Database(e)) => bail!(
            "cannot connect to the job store at {}: {}",
            redact(url),
            describe(&e)
        ),
        Err(e) => {
            Err(e).with_context(|| format!("cannot connect to the job store at {}", redact(url)))
        }
    }
}

/// SQLSTATE codes (PostgreSQL's appendix A).
const UNDEFINED_DATABASE: &str = "3D000";
const DUPLICATE_DATABASE: &str = "42P04";
const INSUFFICIENT_PRIVILEGE: &str = "42501";

fn code(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// The server's own message once, without sqlx's wrapping of it.
fn describe(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    }
}

/// The database a URL names, and how to reach its server's maintenance database.
#[derive(Debug)]
struct Target {
    url: url::Url,
    name: String,
    /// `host:port` for messages.
    server: String,
    user: Option<String>,
}

impl Target {
    fn parse(database_url: &str) -> Result<Target> {
        let url = url::Url::parse(database_url)
            .with_context(|| format!("{} is not a PostgreSQL URL", redact(database_url)))?;
        let encoded = url.path().trim_start_matches('/');
        let name = percent_decode(encoded);
        if name.is_empty() || name.contains('/') {
            bail!(
                "{} names no database: end it in /DBNAME, e.g. postgres://user@host/tilefarm",
                redact(database_url)
            );
        }
        let server = format!(
            "{}:{}",
            url.host_str().unwrap_or("localhost"),
            url.port().unwrap_or(5432)
        );
        let user = (!url.username().is_empty()).then(|| percent_decode(url.username()));
        Ok(Target {
            url,
            name,
            server,
            user,
        })
    }

    /// The same server's `postgres` database, from which another is created.
    fn maintenance_url(&self) -> String {
        let mut url = self.url.clone();
        url.set_path("/postgres");
        url.to_string()
    }

    /// What an administrator runs to create the database.
    fn instructions(&self) -> String {
        let (host, port) = self
            .server
            .rsplit_once(':')
            .unwrap_or((&self.server, "5432"));
        let owner = self.user.as_deref().unwrap_or("USER");
        format!(
            "createdb -h {host} -p {port} -O {user} {name}   (or in psql: CREATE DATABASE {q} OWNER {o};)",
            user = shell_word(owner),
            name = shell_word(&self.name),
            q = quote_ident(&self.name),
            o = quote_ident(owner),
        )
    }
}

/// Creates the database when the server does not have it; `true` if it did.
async fn create_database(target: &Target) -> Result<bool> {
    match sqlx::PgConnection::connect(target.url.as_str()).await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(false);
        }
        Err(e) if code(&e).as_deref() == Some(UNDEFINED_DATABASE) => {}
        Err(e) => bail!(
            "cannot connect to the job store at {}: {}",
            redact(target.url.as_str()),
            describe(&e)
        ),
    }
    let maintenance = target.maintenance_url();
    let mut conn = sqlx::PgConnection::connect(&maintenance)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the database \"{}\" does not exist on {}, and its maintenance database \
                 cannot be reached to create it ({}); create it with: {}",
                target.name,
                target.server,
                describe(&e),
                target.instructions()
            )
        })?;
    let sql = format!("CREATE DATABASE {}", quote_ident(&target.name));
    let created = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    match created {
        Ok(_) => Ok(true),
        // Another `migrate` created it meanwhile.
        Err(e) if code(&e).as_deref() == Some(DUPLICATE_DATABASE) => Ok(false),
        Err(e) if code(&e).as_deref() == Some(INSUFFICIENT_PRIVILEGE) => bail!(
            "the database \"{}\" does not exist on {}, and {} may not create it ({}); \
             ask an administrator to run: {}",
            target.name,
            target.server,
            target
                .user
                .as_deref()
                .map_or("this user".into(), |u| format!("user \"{u}\"")),
            describe(&e),
            target.instructions()
        ),
        Err(e) => bail!(
            "cannot create the database \"{}\" on {}: {}; create it with: {}",
            target.name,
            target.server,
            describe(&e),
            target.instructions()
        ),
    }
}

/// A PostgreSQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A word a shell takes as it is.
fn shell_word(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_database_and_server() {
        let t =
            Target::parse("postgres://tile%20farm:secret@db.example:6432/my%22db?sslmode=require")
                .unwrap();
        assert_eq!(t.name, "my\"db");
        assert_eq!(t.server, "db.example:6432");
        assert_eq!(t.user.as_deref(), Some("tile farm"));
        assert_eq!(
            t.maintenance_url(),
            "postgres://tile%20farm:secret@db.example:6432/postgres?sslmode=require"
        );
        assert_eq!(
            t.instructions(),
            "createdb -h db.example -p 6432 -O 'tile farm' 'my\"db'   \
             (or in psql: CREATE DATABASE \"my\"\"db\" OWNER \"tile farm\";)"
        );
    }

    #[test]
    fn a_url_without_a_database_is_refused() {
        let e = Target::parse("postgres://u@h").unwrap_err().to_string();
        assert!(e.contains("names no database"), "{e}");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
