//! The one error type of the HTTP layer.
//!
//! Handlers return `ApiError`; it becomes `{"error":{"code","message"}}`
//! (`ErrorBody` in the OpenAPI document) with a status. Internal errors are
//! logged with the request's id and answered with a generic message: no
//! database or internal text reaches a client. A record of another
//! organisation is `not_found`, exactly as a record that does not exist.
//!
//! Every operation lists the error statuses it can answer with the
//! response types below (`E401`, `E404`, ...), each `ErrorBody`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudkeep_store::StoreError;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`not_found`, `invalid_query`, ...).
    pub code: String,
    /// What was wrong, and what is allowed, for people.
    pub message: String,
}

/// Declares an error response of the OpenAPI document: a status, what it
/// means, and the `ErrorBody`.
macro_rules! error_responses {
    ($($name:ident = $status:literal, $description:literal;)+) => {
        $(
            #[derive(utoipa::IntoResponses)]
            #[response(status = $status, description = $description)]
            #[allow(dead_code)]
            pub struct $name(ErrorBody);
        )+
    };
}

error_responses! {
    E400 = 400, "the request is malformed";
    E401 = 401, "not signed in: send an API token or a session cookie";
    E403 = 403, "the caller's role does not allow it (or a session change lacks its CSRF header)";
    E404 = 404, "no such thing in the caller's organisation";
    E409 = 409, "it conflicts with the current state (the message says with what)";
    E422 = 422, "the input is not usable: the message says what was wrong and what is allowed";
    E429 = 429, "too many failed sign-ins for this email or from this address: wait the Retry-After seconds";
    E502 = 502, "Azure could not be reached or answered an error";
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before trying again (`Retry-After`), for a 429 or a 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in, or send an API token as 'Authorization: Bearer ck_...'",
        )
    }

    pub fn forbidden(what: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your role does not allow {what}"),
        )
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, context, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; the request id in the response headers helps us find it",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names how to authenticate.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cloudkeep\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => ApiError::not_found(what),
            StoreError::Conflict { what, value } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} '{value}' already exists"),
            ),
            StoreError::AlreadyConnected {
                subscription,
                connection,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "subscription_connected",
                format!(
                    "subscription {subscription} is already connected by connection {connection}: an Azure subscription belongs to one live connection of an organisation. Revoke that connection first, or, connecting by consent, ask to move it (move_connected)"
                ),
            ),
            StoreError::Invalid(message) => ApiError::unprocessable("invalid", message),
            StoreError::State(message) => ApiError::new(StatusCode::CONFLICT, "state", message),
            busy @ StoreError::Busy(_) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!("{busy}; nothing was changed, try again"),
                )
            },
            other => ApiError::internal("store", other),
        }
    }
}

/// `Json` whose rejections (malformed JSON, a missing field, a wrong type)
/// answer in the API's error shape, naming what was wrong.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "invalid_body",
                rejection.body_text(),
            )),
        }
    }
}

/// `Query` whose rejections (an unknown value of a typed filter, a wrong
/// type) answer 422 in the API's error shape, naming what is allowed.
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let _ = state;
        // An empty parameter (`?subscription=`, as an HTML form sends a
        // field left blank) is no filter at all, not a value to refuse.
        let query = parts.uri.query().unwrap_or_default();
        let pairs = form_urlencoded::parse(query.as_bytes()).filter(|(_, v)| !v.is_empty());
        let kept = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        serde_urlencoded::from_str::<T>(&kept)
            .map(Params)
            .map_err(|e| {
                ApiError::unprocessable(
                    "invalid_query",
                    format!("Failed to deserialize query string: {e}"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that kept a write waiting answers 503 with when to try
    /// again, saying nothing was changed.
    #[tokio::test]
    async fn a_busy_store_answers_503_with_retry_after() {
        let wait = std::time::Duration::from_secs(60);
        let response = ApiError::from(StoreError::Busy(wait)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            json!({"error": {"code": "busy", "message":
                "the store is busy: a write waited 60s for the writes before it; nothing was changed, try again"}})
        );
    }
}
