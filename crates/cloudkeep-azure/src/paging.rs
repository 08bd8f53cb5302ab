//! Paged answers as streams. A `Paged` asks for a page only when the
//! items of the one before have been taken, so memory stays one page and a
//! stream dropped early makes no further requests.
//!
//! Three ways of paging share one cursor: ARM lists (`GET`, `value` and an
//! absolute `nextLink`), Cost Management queries (`POST` the same body to
//! `properties.nextLink`) and Resource Graph (`POST` the same body again
//! with `options.$skipToken`). A link must stay on the ARM endpoint (the
//! bearer token goes with it); empty pages that still have a next one are
//! followed, within limits that stop a loop.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::client::{AzureClient, Policy, QpuCharge};
use crate::error::{AzureError, arm_error, truncate_raw};
use crate::token::AccessToken;

/// More pages than any real list has: a `nextLink` loop.
const MAX_PAGES: usize = 10_000;
/// Consecutive empty pages (each with a next one) tolerated in a row.
const MAX_EMPTY_PAGES: usize = 100;

/// The items of a paged Azure answer, fetched a page at a time as they are
/// taken. It is a `Stream` of `Result<T, AzureError>`; an error ends it
/// (what came before it is all there is, never a silently shorter list).
/// `all` collects it.
pub struct Paged<'a, T> {
    inner: BoxStream<'a, Result<T, AzureError>>,
}

impl<'a, T: Send + 'a> Paged<'a, T> {
    pub(crate) fn new(inner: impl Stream<Item = Result<T, AzureError>> + Send + 'a) -> Self {
        Paged {
            inner: inner.boxed(),
        }
    }

    /// A stream whose only item is `error` (the request could not be made).
    pub(crate) fn failed(error: AzureError) -> Self {
        Self::new(stream::iter([Err(error)]))
    }

    /// Every item, or the first error.
    pub async fn all(self) -> Result<Vec<T>, AzureError> {
        self.inner.try_collect().await
    }

    /// Each item through `f`, which may fail.
    pub(crate) fn and_then<U: Send + 'a>(
        self,
        f: impl FnMut(T) -> Result<U, AzureError> + Send + 'a,
    ) -> Paged<'a, U> {
        let mut f = f;
        // An item `f` refuses ends the stream, as a failed page does.
        Paged::new(
            self.inner
                .map(move |item| item.and_then(&mut f))
                .scan(false, |failed, item| {
                    let next = (!*failed).then(|| {
                        *failed = item.is_err();
                        item
                    });
                    futures_util::future::ready(next)
                }),
        )
    }
}

impl<T> Stream for Paged<'_, T> {
    type Item = Result<T, AzureError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// One page's request.
#[derive(Debug, Clone)]
pub(crate) struct PageRequest {
    pub method: Method,
    pub url: Url,
    pub body: Option<Value>,
    /// Cost Management query units the first page is charged; following
    /// pages are free.
    pub qpu_units: Option<u32>,
}

impl PageRequest {
    pub(crate) fn get(url: Url) -> Self {
        PageRequest {
            method: Method::GET,
            url,
            body: None,
            qpu_units: None,
        }
    }

    pub(crate) fn post(url: Url, body: Value) -> Self {
        PageRequest {
            method: Method::POST,
            url,
            body: Some(body),
            qpu_units: None,
        }
    }
}

/// Where the next page is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// A `nextLink`, asked with the same method and body.
    Link(String),
    /// A Resource Graph `$skipToken`, sent in the same body's `options`.
    SkipToken(String),
}

/// One page, parsed.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Next>,
}

struct Cursor<'a, P> {
    client: &'a AzureClient,
    token: &'a AccessToken,
    request: Option<PageRequest>,
    parse: P,
    pages: usize,
    empty_in_a_row: usize,
}

impl<T, P> Cursor<'_, P>
where
    P: Fn(&[u8]) -> Result<Page<T>, AzureError>,
{
    /// The next page with items, or `None` at the end.
    async fn next_page(&mut self) -> Result<Option<Vec<T>>, AzureError> {
        while let Some(request) = self.request.take() {
            self.pages += 1;
            let path = request.url.path().to_string();
            if self.pages > MAX_PAGES {
                return Err(AzureError::Malformed(format!(
                    "the list at {path} did not end after {MAX_PAGES} pages"
                )));
            }
            let Some(body) = self.client.fetch_body(self.token, &request).await? else {
                break;
            };
            let page = (self.parse)(&body).map_err(|e| match e {
                AzureError::Malformed(m) => AzureError::Malformed(format!("a page of {path}: {m}")),
                other => other,
            })?;
            if let Some(next) = page.next {
                let following = self.follow(request.clone(), next)?;
                // A page of items naming itself as the next would repeat
                // them until the page limit (an empty one may: the empty
                // pages' own limit ends that).
                if !page.items.is_empty()
                    && following.url == request.url
                    && following.body == request.body
                {
                    return Err(AzureError::Malformed(format!(
                        "the list at {path} names itself as its next page"
                    )));
                }
                self.request = Some(following);
            }
            if !page.items.is_empty() {
                self.empty_in_a_row = 0;
                return Ok(Some(page.items));
            }
            if self.request.is_some() {
                self.empty_in_a_row += 1;
                if self.empty_in_a_row > MAX_EMPTY_PAGES {
                    return Err(AzureError::Malformed(format!(
                        "the list at {path} answered {MAX_EMPTY_PAGES} empty pages in a row"
                    )));
                }
            }
        }
        tracing::debug!(pages = self.pages, "listed");
        Ok(None)
    }

    fn follow(&self, mut request: PageRequest, next: Next) -> Result<PageRequest, AzureError> {
        match next {
            Next::Link(link) => request.url = self.client.next_link(&link)?,
            Next::SkipToken(token) => {
                let Some(Value::Object(body)) = request.body.as_mut() else {
                    return Err(AzureError::Malformed(
                        "a $skipToken for a request without a body".to_string(),
                    ));
                };
                let options = body
                    .entry("options")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(options) = options {
                    // The token carries the position; `$skip` would move it again.
                    options.remove("$skip");
                    options.insert("$skipToken".to_string(), Value::String(token));
                }
            }
        }
        request.qpu_units = request.qpu_units.map(|_| 0);
        Ok(request)
    }
}

/// An ARM list page: its `value` (missing or `null` is empty) and
/// `nextLink`, each item read by `item` where it lies in the page (a page
/// of a thousand resources is megabytes: not copied first).
pub(crate) fn arm_page_of<T>(
    page: &Value,
    item: impl Fn(&Value) -> Result<T, AzureError>,
) -> Result<Page<T>, AzureError> {
    let items = match page.get("value") {
        Some(Value::Array(v)) => v.iter().map(item).collect::<Result<_, _>>()?,
        None | Some(Value::Null) => Vec::new(),
        Some(other) => {
            return Err(AzureError::Malformed(format!(
                "'value' is not a list: {}",
                truncate_raw(&other.to_string())
            )));
        }
    };
    Ok(Page {
        items,
        next: link(page.get("nextLink")),
    })
}

/// An answer's body as a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Value, AzureError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        AzureError::Malformed(format!(
            "the answer is not JSON ({e}): {}",
            truncate_raw(&String::from_utf8_lossy(body))
        ))
    })?;
    if !value.is_object() {
        return Err(AzureError::Malformed(format!(
            "the answer is not a JSON object: {}",
            truncate_raw(&value.to_string())
        )));
    }
    Ok(value)
}

/// A page parser over the page's JSON object.
pub(crate) fn tree<T>(
    parse: impl Fn(&Value) -> Result<Page<T>, AzureError>,
) -> impl Fn(&[u8]) -> Result<Page<T>, AzureError> {
    move |body| parse(&json_object(body)?)
}

/// A link or token that is a non-empty string; anything else is the end.
pub(crate) fn link(v: Option<&Value>) -> Option<Next> {
    match v {
        Some(Value::String(l)) if !l.trim().is_empty() => Some(Next::Link(l.clone())),
        _ => None,
    }
}

impl AzureClient {
    /// The items of pages asked by `first` and then as each page says,
    /// each page's body parsed by `parse` (a JSON tree through `tree`, or
    /// typed: a page read without building the tree first), as they are
    /// taken.
    pub(crate) fn paged<'a, T, P>(
        &'a self,
        token: &'a AccessToken,
        first: Result<PageRequest, AzureError>,
        parse: P,
    ) -> Paged<'a, T>
    where
        T: Send + 'a,
        P: Fn(&[u8]) -> Result<Page<T>, AzureError> + Send + 'a,
    {
        let first = match first {
            Ok(first) => first,
            Err(e) => return Paged::failed(e),
        };
        let cursor = Cursor {
            client: self,
            token,
            request: Some(first),
            parse,
            pages: 0,
            empty_in_a_row: 0,
        };
        let pages = stream::try_unfold(cursor, |mut cursor| async move {
            Ok(cursor.next_page().await?.map(|items| (items, cursor)))
        });
        Paged::new(
            pages
                .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
                .try_flatten(),
        )
    }

    /// The items of an ARM list (`GET`, following `nextLink`), each read
    /// by `item`.
    pub(crate) fn list_stream<'a, T: Send + 'a>(
        &'a self,
        token: &'a AccessToken,
        first: Result<Url, AzureError>,
        item: fn(&Value) -> Result<T, AzureError>,
    ) -> Paged<'a, T> {
        self.paged(
            token,
            first.map(PageRequest::get),
            tree(move |page| arm_page_of(page, item)),
        )
    }

    /// The items of `/subscriptions/{s}/providers/{path...}`, each read by
    /// `item`.
    pub(crate) fn provider_list<'a, T: Send + 'a>(
        &'a self,
        token: &'a AccessToken,
        subscription_id: &str,
        path: &[&str],
        api_version: &str,
        item: fn(&Value) -> Result<T, AzureError>,
    ) -> Paged<'a, T> {
        let url = self.provider_url(subscription_id, path, api_version);
        self.list_stream(token, url, item)
    }

    /// Every item of an ARM list, collected.
    pub(crate) async fn list(
        &self,
        token: &AccessToken,
        first: Url,
    ) -> Result<Vec<Value>, AzureError> {
        self.list_stream(token, Ok(first), |v| Ok(v.clone()))
            .all()
            .await
    }

    /// One request's JSON object, or `None` for a 204 or an empty body.
    pub(crate) async fn fetch(
        &self,
        token: &AccessToken,
        request: &PageRequest,
    ) -> Result<Option<Value>, AzureError> {
        let path = request.url.path();
        self.fetch_body(token, request)
            .await?
            .map(|body| {
                json_object(&body).map_err(|e| match e {
                    AzureError::Malformed(m) => AzureError::Malformed(format!("{path}: {m}")),
                    other => other,
                })
            })
            .transpose()
    }

    /// One request's successful answer, or `None` for a 204 or an empty body.
    pub(crate) async fn fetch_body(
        &self,
        token: &AccessToken,
        request: &PageRequest,
    ) -> Result<Option<Vec<u8>>, AzureError> {
        let policy = Policy {
            qpu: request.qpu_units.map(|units| QpuCharge {
                tenant: &token.tenant_id,
                units,
            }),
            principal: &token.object_id,
            ..Policy::default()
        };
        let answer = self
            .send_with(request.method.clone(), &request.url, policy, |r| {
                let r = r
                    .bearer_auth(token.token.expose())
                    .header(reqwest::header::ACCEPT, "application/json");
                match &request.body {
                    Some(body) => r.json(body),
                    None => r,
                }
            })
            .await?;
        if !answer.status.is_success() {
            return Err(arm_error(answer.status, &answer.body));
        }
        if answer.status == StatusCode::NO_CONTENT
            || answer.body.iter().all(u8::is_ascii_whitespace)
        {
            return Ok(None);
        }
        Ok(Some(answer.body))
    }

    /// One ARM object by `GET`; an empty answer is malformed.
    pub(crate) async fn get_object(
        &self,
        token: &AccessToken,
        url: Result<Url, AzureError>,
    ) -> Result<Value, AzureError> {
        let url = url?;
        self.fetch(token, &PageRequest::get(url.clone()))
            .await?
            .ok_or_else(|| AzureError::Malformed(format!("{} answered nothing", url.path())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streams_can_move_between_threads() {
        // Collectors run on a multi-threaded runtime and may spawn.
        fn send<T: Send>() {}
        send::<Paged<'static, crate::CostRow>>();
    }

    #[test]
    fn reads_arm_pages() {
        let same = |v: &Value| Ok(v.clone());
        let page = arm_page_of(
            &json!({"value": [1, 2], "nextLink": "https://arm/x?$skiptoken=a"}),
            same,
        )
        .expect("page");
        assert_eq!(page.items.len(), 2);
        assert_eq!(
            page.next,
            Some(Next::Link("https://arm/x?$skiptoken=a".into()))
        );
        let last = arm_page_of(&json!({"value": null, "nextLink": null}), same).expect("page");
        assert!(last.items.is_empty() && last.next.is_none());
        assert!(matches!(
            arm_page_of(&json!({"value": {"a": 1}}), same),
            Err(AzureError::Malformed(_))
        ));
        assert_eq!(link(Some(&json!("  "))), None);
    }

    #[tokio::test]
    async fn an_item_that_fails_ends_the_stream() {
        let items = Paged::new(stream::iter([Ok(1), Ok(2), Ok(3)]))
            .and_then(|x| {
                if x == 2 {
                    Err(AzureError::Malformed("two".into()))
                } else {
                    Ok(x)
                }
            })
            .collect::<Vec<_>>()
            .await;
        assert_eq!(items.len(), 2, "nothing after the error: {items:?}");
        assert!(matches!(items[0], Ok(1)));
        assert!(matches!(items[1], Err(AzureError::Malformed(_))));
    }
}
