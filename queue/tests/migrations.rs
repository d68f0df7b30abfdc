//! Migrations are never edited once landed: a database migrated by an earlier
//! release would refuse the edited file (sqlx checks each applied migration's
//! checksum) or, worse, never run the change. `migrations/landed.txt` holds
//! the checksum of every landed migration of both schemas; this test compares
//! the files with it.

use std::collections::BTreeMap;

use sqlx::SqlSafeStr;
use sqlx::migrate::Migrator;
use tilefarm_queue::{MIGRATOR, SQLITE_MIGRATOR};

const LANDED: &str = include_str!("../../migrations/landed.txt");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(schema, version)` to checksum, as the files are now.
fn current() -> BTreeMap<(String, i64), (String, String)> {
    let schemas: [(&str, &Migrator); 2] = [("postgres", &MIGRATOR), ("sqlite", &SQLITE_MIGRATOR)];
    let mut out = BTreeMap::new();
    for (schema, migrator) in schemas {
        for m in migrator.iter() {
            out.insert(
                (schema.to_string(), m.version),
                (hex(&m.checksum), m.description.to_string()),
            );
        }
    }
    out
}

/// `(schema, version)` to checksum, as they landed.
fn landed() -> BTreeMap<(String, i64), String> {
    LANDED
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            let [schema, version, checksum] = parts[..] else {
                panic!("migrations/landed.txt: {l:?} is not `schema version checksum`");
            };
            let version = version.parse().expect("a migration version is a number");
            ((schema.to_string(), version), checksum.to_string())
        })
        .collect()
}

#[test]
fn landed_migrations_are_never_edited_and_new_ones_are_recorded() {
    let (now, landed) = (current(), landed());
    let mut problems = Vec::new();
    for (key, checksum) in &landed {
        match now.get(key) {
            None => problems.push(format!(
                "{} migration {} landed but is gone: a landed migration is never removed",
                key.0, key.1
            )),
            Some((c, name)) if c != checksum => problems.push(format!(
                "{} migration {}_{name} was edited after it landed: undo the edit and make \
                 the change in a new migration",
                key.0, key.1
            )),
            Some(_) => {}
        }
    }
    for ((schema, version), (checksum, name)) in &now {
        if !landed.contains_key(&(schema.clone(), *version)) {
            problems.push(format!(
                "{schema} migration {version}_{name} is new: record it in migrations/landed.txt \
                 as `{schema} {version} {checksum}`"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_edit_is_caught() {
    // The check above compares checksums; make sure an edited file's differs.
    let m = MIGRATOR.iter().next().expect("a migration");
    let mut edited = m.sql.as_str().to_string();
    edited.push_str("\n-- edited\n");
    let edited = sqlx::migrate::Migration::new(
        m.version,
        m.description.clone(),
        m.migration_type,
        sqlx::AssertSqlSafe(edited).into_sql_str(),
        m.no_tx,
    );
    assert_ne!(
        hex(&edited.checksum),
        landed()[&("postgres".into(), m.version)]
    );
}
