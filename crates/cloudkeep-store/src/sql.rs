//! Building SQL whose shape depends on its input: filters that are present
//! or not, and multi-row inserts.

use std::borrow::Cow;

use sqlx::Any;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;

use crate::{Backend, Result, Tx};

/// A bound value. Text may be borrowed from what the rows are made of, so
/// a first sync's 100,000 resources (about 2 million values) are not
/// copied once more before sqlx copies them for its worker thread.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Real(f64),
}

/// SQL text with `$n` placeholders and their values, in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg<'static>>,
}

impl Sql {
    pub(crate) fn new(start: &str) -> Sql {
        Sql {
            text: start.to_string(),
            args: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Adds a text value; answers its placeholder.
    pub(crate) fn arg(&mut self, v: impl Into<String>) -> String {
        self.args.push(Arg::Text(Some(Cow::Owned(v.into()))));
        format!("${}", self.args.len())
    }

    /// Adds an integer value; answers its placeholder.
    pub(crate) fn arg_int(&mut self, v: i64) -> String {
        self.args.push(Arg::Int(Some(v)));
        format!("${}", self.args.len())
    }

    fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        bind_all(sqlx::query(&self.text), &self.args)
    }

    /// On the pool, or on a connection or transaction (`&mut *tx`).
    pub(crate) async fn fetch_all<'c, E>(&self, on: E) -> Result<Vec<AnyRow>>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        Ok(self.query().fetch_all(on).await?)
    }

    pub(crate) async fn execute(&self, tx: &mut Tx) -> Result<u64> {
        Ok(self.query().execute(&mut **tx).await?.rows_affected())
    }
}

fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    args: &'q [Arg<'_>],
) -> Query<'q, Any, AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v.as_deref()),
            Arg::Int(v) => q.bind(*v),
            Arg::Real(v) => q.bind(*v),
        };
    }
    q
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

/// Rows a multi-row insert carries: 200 rows of 15 columns bind 3,000
/// values, far under both backends' limits (SQLite 32,766, PostgreSQL
/// 65,535), and a statement of that size, prepared once, is reused for
/// every full chunk.
const ROWS_PER_STATEMENT: usize = 200;

/// Inserts rows (each `columns.len()` values, in that order) in few
/// statements: multi-row `VALUES`.
///
/// SQLite's placeholders are plain `?`: SQLite keeps a list of a
/// statement's named parameters (`$NNN`, and numbered `?NNN` too) and
/// looking a name up scans it, which sqlx does for every parameter it
/// binds, so a statement of thousands of them binds in quadratic time
/// (measured: most of a first sync). Anonymous `?` are bound by position.
/// (Rows sent as one JSON parameter and unpacked by `json_each` were
/// measured too: slower, as SQLite parses a row's JSON again for each
/// column.)
pub(crate) async fn bulk_insert(
    tx: &mut Tx,
    backend: Backend,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Arg<'_>>>,
) -> Result<()> {
    bulk_insert_with(tx, backend, table, columns, rows, "").await
}

/// The same, with a clause after the values (`ON CONFLICT ...`).
pub(crate) async fn bulk_insert_with(
    tx: &mut Tx,
    backend: Backend,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Arg<'_>>>,
    suffix: &str,
) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Arg<'_>>> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let mut text = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut n = 0;
        for r in 0..chunk.len() {
            text.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..columns.len() {
                if c > 0 {
                    text.push_str(", ");
                }
                n += 1;
                match backend {
                    Backend::Sqlite => text.push('?'),
                    Backend::Postgres => text.push_str(&format!("${n}")),
                }
            }
            text.push(')');
        }
        text.push_str(suffix);
        let args: Vec<Arg<'_>> = chunk.into_iter().flatten().collect();
        debug_assert_eq!(args.len(), n);
        // A full-size statement is prepared once and reused; a last,
        // shorter one is not kept in the connection's statement cache,
        // where every distinct length would stay.
        let full = n == ROWS_PER_STATEMENT * columns.len();
        bind_all(sqlx::query(&text).persistent(full), &args)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
