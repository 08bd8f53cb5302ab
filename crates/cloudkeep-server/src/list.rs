//! One list shape for every list endpoint: `{"items": [...], "next": ...}`,
//! `limit` from 1 to 1000 (default 100) and `after` (the previous page's
//! `next`). Filtering and paging happen in SQL (the store's `Page`).

use cloudkeep_store::{Cursor, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiError;

/// A page of a list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The wire page of a store page, each item in its wire view.
    pub fn from_store<S>(page: cloudkeep_store::Page<S>) -> Page<T>
    where
        T: for<'a> From<&'a S>,
    {
        Page {
            items: page.items.iter().map(T::from).collect(),
            next: page.next.map(|c| c.to_string()),
        }
    }
}

/// Which page a request asks for, from its `limit` and `after` (each list's
/// query has both; `limit` is read here so that any value outside the range,
/// a word or a negative number alike, gets the same answer).
pub fn page_request(limit: Option<&str>, after: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => PageRequest::DEFAULT_LIMIT,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_limit",
                    format!(
                        "limit '{raw}' is not allowed: give a whole number from 1 to {} (default {})",
                        PageRequest::MAX_LIMIT,
                        PageRequest::DEFAULT_LIMIT
                    ),
                )
            })?,
    };
    Ok(PageRequest {
        after: after.map(Cursor::from_client),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_the_range_say_the_range() {
        assert_eq!(page_request(None, None).map(|p| p.limit).ok(), Some(100));
        assert_eq!(
            page_request(Some("1000"), None).map(|p| p.limit).ok(),
            Some(1000)
        );
        for bad in ["0", "-1", "1001", "lots", ""] {
            let e = page_request(Some(bad), None).expect_err(bad);
            assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message.contains("from 1 to 1000"), "{}", e.message);
        }
    }
}
