//! One list shape for every list: a page of items and a cursor to the next.
//! Lists are filtered and paged in SQL by keyset (the cursor holds the last
//! row's sort key), so a deep page costs what the first does.

use crate::{Result, StoreError};

/// Where the next page starts; opaque to callers, made by the list that
/// answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor from a caller (an API query string), checked when used.
    pub fn from_client(raw: impl Into<String>) -> Cursor {
        Cursor(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn of(parts: &[&str]) -> Cursor {
        Cursor(parts.join("."))
    }

    /// The cursor's parts, `n` of them, or an error that says what to pass.
    pub(crate) fn parts(&self, n: usize) -> Result<Vec<&str>> {
        let parts: Vec<&str> = self.0.splitn(n, '.').collect();
        if parts.len() != n || parts.iter().any(|p| p.is_empty()) {
            return Err(bad_cursor());
        }
        Ok(parts)
    }

    /// A cursor of one time (milliseconds) and one id.
    pub(crate) fn time_and_id(&self) -> Result<(i64, &str)> {
        let parts = self.parts(2)?;
        let ms = parts[0].parse().map_err(|_| bad_cursor())?;
        Ok((ms, parts[1]))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn bad_cursor() -> StoreError {
    StoreError::Invalid(
        "the cursor is not one this list answered: pass the `next` of the previous page as it was given"
            .into(),
    )
}

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<Cursor>,
    pub limit: usize,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;

    pub fn first(limit: usize) -> PageRequest {
        PageRequest { after: None, limit }
    }

    /// Where a list ordered by (time, id) resumes: the cursor's time and id,
    /// or `start` and no id on the first page (`i64::MIN` for oldest first,
    /// `i64::MAX` for newest first).
    pub(crate) fn time_and_id(&self, start: i64) -> Result<(i64, String)> {
        match &self.after {
            Some(c) => {
                let (ms, id) = c.time_and_id()?;
                Ok((ms, id.to_string()))
            }
            None => Ok((start, String::new())),
        }
    }

    /// The rows to ask SQL for: one more than the page, to know whether
    /// another page follows.
    pub(crate) fn fetch(&self) -> i64 {
        self.limit.clamp(1, Self::MAX_LIMIT) as i64 + 1
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest::first(Self::DEFAULT_LIMIT)
    }
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; none on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Cuts the extra row `PageRequest::fetch` asked for, making the cursor
    /// from the last item kept.
    pub(crate) fn from_rows(
        mut items: Vec<T>,
        req: &PageRequest,
        cursor: impl Fn(&T) -> Cursor,
    ) -> Page<T> {
        let limit = req.limit.clamp(1, PageRequest::MAX_LIMIT);
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor)
        } else {
            None
        };
        Page { items, next }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}
