//! The seam between the job store's one set of operations and its two
//! databases. Statements are written once, in the dialect both share
//! (`$n` placeholders, `RETURNING`, `coalesce`, `EXISTS`); what differs is
//! here and nowhere else:
//!
//! - **Row locks**: PostgreSQL locks the rows a transaction decides on
//!   ([`Tx::query_locking`] adds `FOR UPDATE`); SQLite has one writer, which
//!   serializes every transaction instead.
//! - **Time**: every timestamp is bound from the clock of the process that
//!   writes it ([`Tx::now`], one instant a transaction), so both databases
//!   store and compare the same values and no SQL calls `now()`.
//! - **Types**: UUIDs are `uuid` or 16-byte blobs, JSON is `jsonb` or text
//!   (bind and read it as [`sqlx::types::Json`]), integers are bound at
//!   PostgreSQL's widths, which SQLite's one integer type takes as they are.
//! - **Pools**: SQLite has one connection that writes and a few that only
//!   read ([`Db::read`]), which WAL lets read while a write is under way.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query as SqlxQuery;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Encode, Postgres, Row as _, Sqlite, Type};

/// A value both databases can take as a parameter.
pub trait Param:
    for<'t> Encode<'t, Postgres> + Type<Postgres> + for<'t> Encode<'t, Sqlite> + Type<Sqlite>
{
}

impl<T> Param for T where
    T: for<'t> Encode<'t, Postgres> + Type<Postgres> + for<'t> Encode<'t, Sqlite> + Type<Sqlite>
{
}

/// A value both databases can give back from a column.
pub trait Column:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl<T> Column for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

/// A column's name or position, in either database's rows.
pub trait Index: ColumnIndex<PgRow> + ColumnIndex<SqliteRow> {}

impl<T: ColumnIndex<PgRow> + ColumnIndex<SqliteRow>> Index for T {}

/// The database a job store runs on.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite {
        /// The one connection that writes.
        writer: SqlitePool,
        /// Connections that only read.
        readers: SqlitePool,
    },
}

/// A statement with its parameters, for one database.
pub enum Query {
    Postgres(SqlxQuery<'static, Postgres, PgArguments>),
    Sqlite {
        query: SqlxQuery<'static, Sqlite, SqliteArguments>,
        /// Whether it may run on a connection that only reads.
        read: bool,
    },
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Query::Postgres(_) => "Query::Postgres",
            Query::Sqlite { .. } => "Query::Sqlite",
        })
    }
}

impl Query {
    /// Binds the next `$n`.
    pub fn bind<T: Param>(self, value: T) -> Self {
        match self {
            Query::Postgres(q) => Query::Postgres(q.bind(value)),
            Query::Sqlite { query, read } => Query::Sqlite {
                query: query.bind(value),
                read,
            },
        }
    }
}

/// A row from either database.
#[derive(Debug)]
pub enum Row {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl Row {
    /// The value of a column (by name or position).
    pub fn get<T: Column>(&self, column: impl Index) -> sqlx::Result<T> {
        match self {
            Row::Postgres(r) => r.try_get(column),
            Row::Sqlite(r) => r.try_get(column),
        }
    }

    /// A text column holding a name of `T` (a state, a kind, a stage).
    pub fn parse<T>(&self, column: &str) -> sqlx::Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let text: String = self.get(column)?;
        text.parse().map_err(|e| sqlx::Error::ColumnDecode {
            index: column.into(),
            source: Box::new(e),
        })
    }
}

/// A statement whose text is made at run time from constant parts (numbered
/// placeholders for a batch of rows, say), never from input.
fn made(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

fn statement(db: &Db, sql: &'static str, read: bool) -> Query {
    match db {
        Db::Postgres(_) => Query::Postgres(sqlx::query(sql)),
        Db::Sqlite { .. } => Query::Sqlite {
            query: sqlx::query(sql),
            read,
        },
    }
}

fn mismatch() -> sqlx::Error {
    sqlx::Error::Protocol("a statement made for one database was run on the other".into())
}

impl Db {
    /// A statement that writes, or reads what a writer must see.
    pub fn query(&self, sql: &'static str) -> Query {
        statement(self, sql, false)
    }

    /// A statement that only reads: on SQLite it runs beside the writer.
    pub fn read(&self, sql: &'static str) -> Query {
        statement(self, sql, true)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Begins a transaction.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        let now = Utc::now();
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?, now),
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin().await?, now),
        })
    }

    pub async fn execute(&self, q: Query) -> sqlx::Result<u64> {
        Ok(match (self, q) {
            (Db::Postgres(p), Query::Postgres(q)) => q.execute(p).await?.rows_affected(),
            (Db::Sqlite { writer, readers }, Query::Sqlite { query, read }) => query
                .execute(if read { readers } else { writer })
                .await?
                .rows_affected(),
            _ => return Err(mismatch()),
        })
    }

    pub async fn fetch_optional(&self, q: Query) -> sqlx::Result<Option<Row>> {
        Ok(match (self, q) {
            (Db::Postgres(p), Query::Postgres(q)) => q.fetch_optional(p).await?.map(Row::Postgres),
            (Db::Sqlite { writer, readers }, Query::Sqlite { query, read }) => query
                .fetch_optional(if read { readers } else { writer })
                .await?
                .map(Row::Sqlite),
            _ => return Err(mismatch()),
        })
    }

    pub async fn fetch_one(&self, q: Query) -> sqlx::Result<Row> {
        self.fetch_optional(q)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn fetch_all(&self, q: Query) -> sqlx::Result<Vec<Row>> {
        Ok(match (self, q) {
            (Db::Postgres(p), Query::Postgres(q)) => q
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            (Db::Sqlite { writer, readers }, Query::Sqlite { query, read }) => query
                .fetch_all(if read { readers } else { writer })
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            _ => return Err(mismatch()),
        })
    }

    /// The first column of every row `q` gives.
    pub async fn fetch_column<T: Column>(&self, q: Query) -> sqlx::Result<Vec<T>> {
        self.fetch_all(q).await?.iter().map(|r| r.get(0)).collect()
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match self {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite { writer, readers } => {
                readers.close().await;
                writer.close().await;
            }
        }
    }
}

/// A transaction on either database, with the instant it began.
pub enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>, DateTime<Utc>),
    Sqlite(sqlx::Transaction<'static, Sqlite>, DateTime<Utc>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tx::Postgres(..) => "Tx::Postgres",
            Tx::Sqlite(..) => "Tx::Sqlite",
        })
    }
}

impl Tx {
    /// The time every timestamp this transaction writes is given.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Tx::Postgres(_, t) | Tx::Sqlite(_, t) => *t,
        }
    }

    pub fn query(&self, sql: &'static str) -> Query {
        match self {
            Tx::Postgres(..) => Query::Postgres(sqlx::query(sql)),
            Tx::Sqlite(..) => Query::Sqlite {
                query: sqlx::query(sql),
                read: false,
            },
        }
    }

    /// A `SELECT` whose rows stay locked until the transaction ends, so that
    /// what is decided on them is decided one transaction at a time.
    pub fn query_locking(&self, sql: &'static str) -> Query {
        match self {
            Tx::Postgres(..) => Query::Postgres(sqlx::query(made(format!("{sql} FOR UPDATE")))),
            // One writer at a time: every transaction is already alone.
            Tx::Sqlite(..) => self.query(sql),
        }
    }

    /// An `INSERT` of `rows` rows of `columns` values each: `head` (up to
    /// `VALUES`) followed by numbered placeholders, to bind row by row.
    pub fn insert_rows(&self, head: &'static str, columns: usize, rows: usize) -> Query {
        let mut sql = String::with_capacity(head.len() + rows * columns * 6);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..columns {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", r * columns + c + 1));
            }
            sql.push(')');
        }
        self.query_made(sql)
    }

    /// Lets the commit return before it is on disk: for writes whose loss in a
    /// database crash costs nothing but a little time.
    pub async fn commit_lazily(&mut self) -> sqlx::Result<()> {
        if let Tx::Postgres(tx, _) = self {
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub async fn execute(&mut self, q: Query) -> sqlx::Result<u64> {
        Ok(match (self, q) {
            (Tx::Postgres(tx, _), Query::Postgres(q)) => {
                q.execute(&mut **tx).await?.rows_affected()
            }
            (Tx::Sqlite(tx, _), Query::Sqlite { query, .. }) => {
                query.execute(&mut **tx).await?.rows_affected()
            }
            _ => return Err(mismatch()),
        })
    }

    pub async fn fetch_optional(&mut self, q: Query) -> sqlx::Result<Option<Row>> {
        Ok(match (self, q) {
            (Tx::Postgres(tx, _), Query::Postgres(q)) => {
                q.fetch_optional(&mut **tx).await?.map(Row::Postgres)
            }
            (Tx::Sqlite(tx, _), Query::Sqlite { query, .. }) => {
                query.fetch_optional(&mut **tx).await?.map(Row::Sqlite)
            }
            _ => return Err(mismatch()),
        })
    }

    pub async fn fetch_one(&mut self, q: Query) -> sqlx::Result<Row> {
        self.fetch_optional(q)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn fetch_all(&mut self, q: Query) -> sqlx::Result<Vec<Row>> {
        Ok(match (self, q) {
            (Tx::Postgres(tx, _), Query::Postgres(q)) => q
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            (Tx::Sqlite(tx, _), Query::Sqlite { query, .. }) => query
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            _ => return Err(mismatch()),
        })
    }

    /// The first column of every row `q` gives.
    pub async fn fetch_column<T: Column>(&mut self, q: Query) -> sqlx::Result<Vec<T>> {
        self.fetch_all(q).await?.iter().map(|r| r.get(0)).collect()
    }

    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Postgres(tx, _) => tx.commit().await,
            Tx::Sqlite(tx, _) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Tx::Postgres(tx, _) => tx.rollback().await,
            Tx::Sqlite(tx, _) => tx.rollback().await,
        }
    }
}

/// `$first, $first+1, ...`: `count` numbered placeholders, for an `IN (...)`.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Db {
    /// A statement made from constant parts at run time (see [`placeholders`]).
    pub fn query_made(&self, sql: String) -> Query {
        match self {
            Db::Postgres(_) => Query::Postgres(sqlx::query(made(sql))),
            Db::Sqlite { .. } => Query::Sqlite {
                query: sqlx::query(made(sql)),
                read: false,
            },
        }
    }
}

impl Tx {
    /// A statement made from constant parts at run time (see [`placeholders`]).
    pub fn query_made(&self, sql: String) -> Query {
        match self {
            Tx::Postgres(..) => Query::Postgres(sqlx::query(made(sql))),
            Tx::Sqlite(..) => Query::Sqlite {
                query: sqlx::query(made(sql)),
                read: false,
            },
        }
    }
}
