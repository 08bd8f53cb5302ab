//! Building SQL whose shape depends on its input: filters that are present
//! or not, and multi-row inserts.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool};

use crate::{Backend, Result, Tx};

/// A bound value.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

/// SQL text with `$n` placeholders and their values, in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
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
        self.args.push(Arg::Text(Some(v.into())));
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

    pub(crate) async fn fetch_all(&self, pool: &AnyPool) -> Result<Vec<AnyRow>> {
        Ok(self.query().fetch_all(pool).await?)
    }

    pub(crate) async fn execute(&self, tx: &mut Tx) -> Result<u64> {
        Ok(self.query().execute(&mut **tx).await?.rows_affected())
    }
}

fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    args: &'q [Arg],
) -> Query<'q, Any, AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v.as_deref()),
            Arg::Int(v) => q.bind(*v),
        };
    }
    q
}

/// A column's type in a JSON bulk insert.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Col {
    Text,
    Int,
}

/// Rows a statement inserts at most.
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts many rows in few statements: the rows travel as one JSON array
/// parameter (`[[v1, v2, ...], ...]`, in `columns`' order), which the
/// database unpacks itself (`json_each` on SQLite, `jsonb_array_elements`
/// on PostgreSQL). One bound value a statement instead of thousands: no
/// per-parameter binding cost (sqlx looks each SQLite parameter up by name,
/// which grows with the square of their number), and a small statement to
/// prepare and cache.
pub(crate) async fn json_insert(
    tx: &mut Tx,
    backend: Backend,
    table: &str,
    columns: &[(&str, Col)],
    rows: &[serde_json::Value],
) -> Result<()> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| match t {
            Col::Text => format!("j.value ->> {i}"),
            Col::Int => format!("CAST(j.value ->> {i} AS BIGINT)"),
        })
        .collect();
    let source = match backend {
        Backend::Sqlite => "json_each($1) AS j",
        Backend::Postgres => "jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)",
    };
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {source}",
        names.join(", "),
        values.join(", ")
    );
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let payload = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into());
        sqlx::query(&sql).bind(payload).execute(&mut **tx).await?;
    }
    Ok(())
}
