//! `tilefarm migrate` on a server without the job store's database: it creates
//! the database and its schema, and where it may not, says what to run.

use std::process::{Command, Output};

use tilefarm_queue::MIGRATOR;
use uuid::Uuid;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("TILEFARM_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into())
}

/// `admin_url` with another user and database.
fn url_for(user: &str, database: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("a database URL");
    url.set_username(user).expect("a user");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

fn migrate(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tilefarm"))
        .args(["migrate", "--database", url])
        .env_remove("TILEFARM_DATABASE_URL")
        .output()
        .expect("tilefarm runs")
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn admin() -> sqlx::PgPool {
    let url = admin_url();
    sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url} ({e}); scripts/test starts it")
    })
}

async fn exists(admin: &sqlx::PgPool, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap()
}

async fn run_sql(admin: &sqlx::PgPool, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn migrate_creates_a_missing_database_then_its_schema() {
    let admin = admin().await;
    // Not a plain identifier: the name must be quoted to be created.
    let name = format!("tilefarm_test_{}-Jobs", Uuid::new_v4().simple());
    assert!(!exists(&admin, &name).await);
    let user = url::Url::parse(&admin_url())
        .unwrap()
        .username()
        .to_string();
    let url = url_for(&user, &name);

    let first = migrate(&url);
    assert!(first.status.success(), "{}", show(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains(&format!("created the database \"{name}\"")),
        "{}",
        show(&first)
    );
    assert!(exists(&admin, &name).await, "the database exists");
    let store = sqlx::PgPool::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&store)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        MIGRATOR.iter().count(),
        "every migration applied"
    );
    store.close().await;

    // Again: nothing created, nothing changed.
    let second = migrate(&url);
    assert!(second.status.success(), "{}", show(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(!stdout.contains("created"), "{}", show(&second));
    assert!(stdout.contains("up to date"), "{}", show(&second));

    run_sql(&admin, format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await;
}

#[tokio::test]
async fn a_user_who_may_not_create_it_is_told_what_to_run() {
    let admin = admin().await;
    let role = format!("tilefarm_test_{}", Uuid::new_v4().simple());
    run_sql(&admin, format!("CREATE ROLE {role} LOGIN NOCREATEDB")).await;
    let name = format!("tilefarm_test_{}", Uuid::new_v4().simple());
    let url = url_for(&role, &name);

    let out = migrate(&url);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    run_sql(&admin, format!("DROP ROLE {role}")).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert!(!exists(&admin, &name).await, "nothing was created");
    // One line, saying it once, with the commands an administrator runs.
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("\"{name}\"")), "{stderr}");
    assert!(
        stderr.contains(&format!("user \"{role}\" may not create it")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("createdb -h 127.0.0.1 -p 5432 -O {role} {name}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("CREATE DATABASE \"{name}\" OWNER \"{role}\";")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_farm_process_on_a_missing_database_says_to_migrate() {
    let name = format!("tilefarm_test_{}", Uuid::new_v4().simple());
    let user = url::Url::parse(&admin_url())
        .unwrap()
        .username()
        .to_string();
    let url = url_for(&user, &name);
    let out = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
        .args(["worker", "--database", &url])
        .args(["--amqp", "amqp://guest:guest@127.0.0.1:5672/%2f"])
        .args(["--store", "file:///nonexistent"])
        .output()
        .expect("tilefarm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");
    assert!(
        stderr.contains("create it and its schema with `tilefarm migrate --database URL`"),
        "{stderr}"
    );
    assert!(!exists(&admin().await, &name).await);
}
