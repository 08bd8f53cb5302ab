//! The request context every operation gets, and ARM's paging (`$top`,
//! `$skiptoken`, absolute `nextLink`s).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::{Value, json};

use super::ArmError;
use super::auth::{authorization_failed, permitted};
use super::routes::Params;
use crate::state::SimState;
use crate::token::Claims;
use crate::world::World;
use axum::http::Method;

/// Everything an operation needs to know about its request.
pub struct Ctx<'a> {
    pub st: &'a SimState,
    pub method: Method,
    /// `https://host`, for absolute links.
    pub base: String,
    /// The (normalised) path as the client sent it.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub api_version: String,
    pub body: Bytes,
    pub claims: Claims,
    /// What the route captured from the path (`sub`, `scope`, `name`, ...).
    pub params: Params,
}

impl Ctx<'_> {
    /// A captured path parameter; empty when the route has none by that name.
    pub fn p(&self, name: &str) -> &str {
        self.params.get(name).unwrap_or("")
    }

    /// An optional captured path parameter (`{name?}` in a pattern).
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// A query parameter by name, case-insensitively (`$top`, `$skipToken`).
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn caller(&self) -> &str {
        &self.claims.oid
    }

    /// Parses the JSON body, answering ARM's error for malformed content.
    pub fn json_body(&self) -> Result<Value, ArmError> {
        if self.body.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'The request body is empty.'.",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        })
    }

    /// Fails with `AuthorizationFailed` unless the caller may do `action` at `scope`.
    pub fn authorize(&self, world: &World, action: &str, scope: &str) -> Result<(), ArmError> {
        if permitted(world, self.caller(), action, scope) {
            return Ok(());
        }
        Err(authorization_failed(self.caller(), action, scope))
    }

    /// The absolute `nextLink` for a continuation token, keeping the
    /// request's other parameters and re-encoding them as ARM does.
    pub fn next_link(&self, token: &str) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            if !k.eq_ignore_ascii_case("$skiptoken") {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("$skiptoken", token);
        format!("{}{}?{}", self.base, self.path, ser.finish())
    }

    fn top(&self, max_page: usize) -> Result<usize, ArmError> {
        let top = match self.q("$top") {
            Some(t) => t.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidTopInQueryString",
                    format!("The value '{t}' of the $top query parameter is invalid. It must be a positive integer."),
                )
            })?,
            None => max_page,
        };
        Ok(top.min(max_page))
    }

    fn skiptoken(&self) -> Result<usize, ArmError> {
        match self.q("$skiptoken") {
            Some(t) => decode_offset(t).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidSkipToken",
                    "The provided $skiptoken is invalid or has expired.",
                )
            }),
            None => Ok(0),
        }
    }

    /// A whole listing answered empty, as Azure sometimes does (the
    /// `empty_listings` fault): an empty first page whose `nextLink` leads
    /// past the end, to an empty last page.
    fn empty_listing(&self) -> Option<Value> {
        (self.q("$skiptoken").is_none() && self.st.take_empty_listing(&self.path))
            .then(|| json!({ "value": [], "nextLink": self.next_link(&encode_offset(usize::MAX)) }))
    }

    /// Real lists sometimes answer an empty page that still has a
    /// `nextLink`; the `rate_empty_page` fault reproduces it.
    fn empty_page(&self, position: usize) -> Option<Value> {
        let rate = self.st.faults().rate_empty_page;
        (rate > 0.0 && self.st.draw() < rate)
            .then(|| json!({ "value": [], "nextLink": self.next_link(&encode_offset(position)) }))
    }

    /// One page of `items`, serialised with `render`, with a `nextLink`
    /// when more remain. The token is an offset into `items`.
    pub fn page<T>(
        &self,
        items: &[T],
        max_page: usize,
        render: impl Fn(&T) -> Value,
    ) -> Result<Value, ArmError> {
        let top = self.top(max_page)?;
        if let Some(empty) = self.empty_listing() {
            return Ok(empty);
        }
        let offset = self.skiptoken()?.min(items.len());
        if offset < items.len() {
            if let Some(empty) = self.empty_page(offset) {
                return Ok(empty);
            }
        }
        let end = offset.saturating_add(top).min(items.len());
        let value: Vec<Value> = items[offset..end].iter().map(render).collect();
        let mut body = json!({ "value": value });
        if end < items.len() {
            body["nextLink"] = json!(self.next_link(&encode_offset(end)));
        }
        Ok(body)
    }

    /// Like `page`, for items with increasing stable keys: the token is the
    /// next key, so items removed or added between pages never make a
    /// surviving item be skipped or repeated.
    pub fn page_keyed<T>(
        &self,
        items: &[(usize, T)],
        max_page: usize,
        render: impl Fn(&T) -> Value,
    ) -> Result<Value, ArmError> {
        let top = self.top(max_page)?;
        if let Some(empty) = self.empty_listing() {
            return Ok(empty);
        }
        let from_key = self.skiptoken()?;
        let start = items.partition_point(|(k, _)| *k < from_key);
        if start < items.len() {
            if let Some(empty) = self.empty_page(items[start].0) {
                return Ok(empty);
            }
        }
        let end = start.saturating_add(top).min(items.len());
        let value: Vec<Value> = items[start..end].iter().map(|(_, t)| render(t)).collect();
        let mut body = json!({ "value": value });
        if let Some((next_key, _)) = items.get(end) {
            body["nextLink"] = json!(self.next_link(&encode_offset(*next_key)));
        }
        Ok(body)
    }
}

pub fn encode_offset(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{{\"o\":{offset}}}"))
}

pub fn decode_offset(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("o")?.as_u64().map(|o| o as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptokens_round_trip() {
        assert_eq!(decode_offset(&encode_offset(1234)), Some(1234));
        assert_eq!(decode_offset("garbage!"), None);
    }
}
