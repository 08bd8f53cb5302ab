//! The client's error type, and defensive parsing of Entra ID's and Azure
//! Resource Manager's error bodies (which are not uniform: see AZURE.md).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

/// Why Entra ID refused a credential, from its AADSTS code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialErrorKind {
    /// AADSTS7000215: the secret does not match (often the secret's id was pasted).
    WrongSecret,
    /// AADSTS7000222: the secret has expired.
    ExpiredSecret,
    /// AADSTS700016: no such application in the tenant (or not consented there).
    UnknownApplication,
    /// AADSTS90002: no such tenant.
    UnknownTenant,
    /// AADSTS65001: the application has not been consented in the tenant.
    ConsentMissing,
    /// Any other refusal; see the message.
    Other,
}

impl CredentialErrorKind {
    /// The kind for an AADSTS code.
    pub fn from_aadsts(code: u32) -> Self {
        match code {
            7000215 => CredentialErrorKind::WrongSecret,
            7000222 => CredentialErrorKind::ExpiredSecret,
            700016 => CredentialErrorKind::UnknownApplication,
            90002 => CredentialErrorKind::UnknownTenant,
            65001 => CredentialErrorKind::ConsentMissing,
            _ => CredentialErrorKind::Other,
        }
    }
}

/// What went wrong talking to Azure. `Display` says what was wrong and what
/// to do about it; the fields keep Azure's own code and message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AzureError {
    /// Entra ID refused the credential (AADSTS codes).
    #[error("{}", credential_text(*.kind, *.code, .message))]
    Credential {
        kind: CredentialErrorKind,
        code: Option<u32>,
        message: String,
    },
    /// ARM 401 (InvalidAuthenticationToken, ExpiredAuthenticationToken, ...).
    #[error(
        "Azure Resource Manager rejected the access token ({code}): {message} \
         Request a new token; if it keeps failing, check the tenant id and this machine's clock."
    )]
    Unauthorized { code: String, message: String },
    /// ARM 403 (AuthorizationFailed): the message names the action and scope.
    #[error(
        "the principal is not allowed to do this ({code}): {message} \
         Assign it a role that grants that action at that scope (for cloudkeep, at least Reader on the subscription)."
    )]
    Forbidden { code: String, message: String },
    /// ARM 404 (SubscriptionNotFound, ResourceNotFound, ...).
    #[error(
        "Azure could not find it ({code}): {message} \
         Check the id, and that the principal has been given access to it."
    )]
    NotFound { code: String, message: String },
    /// 429 after retries, with the last Retry-After.
    #[error(
        "Azure is throttling these requests (HTTP 429 after several retries): try again in {} s or later.",
        .retry_after.as_secs().max(1)
    )]
    Throttled { retry_after: Duration },
    /// Any other HTTP error from Azure (5xx after retries, 400s): status,
    /// code and message (the raw body, truncated to 2 KB, when it has no
    /// message).
    #[error(
        "Azure answered HTTP {status} ({code}): {message} \
         If it is a 5xx, Azure is having trouble: retry later; report it if it persists."
    )]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// Connection refused/reset, TLS, timeout, truncated body.
    #[error(
        "could not reach Azure: {0}. Check network access (proxies, firewalls) to the Entra ID and Resource Manager endpoints, and retry."
    )]
    Transport(String),
    /// A request Azure would refuse, caught before it is sent (a cost query
    /// with more than two groupings) or told by the answer (a Resource
    /// Graph result truncated because the query cannot be paged).
    #[error("the request cannot be answered as asked: {0}")]
    InvalidRequest(String),
    /// A 2xx body that is not what the API promises.
    #[error("Azure answered with something unexpected: {0}. Retry; report it if it persists.")]
    Malformed(String),
}

fn credential_text(kind: CredentialErrorKind, code: Option<u32>, message: &str) -> String {
    let code_text = code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default();
    match kind {
        CredentialErrorKind::WrongSecret => {
            format!("the client secret is wrong{code_text}: paste the secret's value, not its id")
        }
        CredentialErrorKind::ExpiredSecret => format!(
            "the client secret has expired{code_text}: create a new client secret for the app registration and paste its value"
        ),
        CredentialErrorKind::UnknownApplication => format!(
            "Entra ID knows no application with this client id in the tenant{code_text}: check the application (client) id and the tenant id, and that the application is consented in that tenant"
        ),
        CredentialErrorKind::UnknownTenant => format!(
            "Entra ID knows no such tenant{code_text}: check the tenant id (a GUID) or its domain"
        ),
        CredentialErrorKind::ConsentMissing => format!(
            "the application has not been consented in the tenant{code_text}: ask an administrator of the tenant to grant admin consent"
        ),
        CredentialErrorKind::Other => {
            format!("Entra ID refused the credential{code_text}: {message}")
        }
    }
}

/// The longest raw body kept in an error message.
pub(crate) const MAX_RAW: usize = 2048;

/// `text` cut to at most `MAX_RAW` bytes on a character boundary.
pub(crate) fn truncate_raw(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_RAW {
        return text.to_string();
    }
    let mut end = MAX_RAW;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What could be read from an error body, whatever its shape.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    /// ARM's `error.code`, Entra's `error`, or a bare `code`; may be empty.
    pub code: String,
    /// The message; the raw body (truncated) when there is none.
    pub message: String,
    /// Entra's `error_codes`, or the AADSTS number in the description.
    pub aadsts: Option<u32>,
    /// Whether the body was JSON with an error field at all.
    pub structured: bool,
}

/// A key of a JSON object, compared case-insensitively (Microsoft.Security
/// answers `ErrorCode`/`Message`).
fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A JSON value as text: strings as they are, numbers (`404`) as digits,
/// `null` as nothing, anything else as compact JSON.
fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => other.to_string(),
    }
}

fn first_text(map: &Map<String, Value>, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| text_of(get_ci(map, k)))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

/// The number after the first `AADSTS` in `text`.
fn aadsts_in(text: &str) -> Option<u32> {
    let at = text.find("AADSTS")?;
    let digits: String = text[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Reads an error body of any shape: ARM's `{"error":{code,message}}`,
/// Entra's `{"error":"..","error_description":"AADSTS..","error_codes":[..]}`,
/// bodies without the wrapper, serialised exceptions (`ErrorCode`), codes
/// as numbers or numbers in strings, HTML, nothing at all. Never fails.
pub(crate) fn parse_error_body(body: &[u8]) -> ErrorBody {
    let raw = String::from_utf8_lossy(body);
    let trimmed = raw.trim_start_matches('\u{feff}').trim();
    let mut out = ErrorBody::default();
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed) {
        match get_ci(&map, "error") {
            Some(Value::Object(inner)) => {
                out.code = first_text(inner, &["code", "errorCode"]);
                out.message = first_text(inner, &["message", "error_description"]);
                out.structured = true;
            }
            Some(Value::String(err)) => {
                out.code = err.trim().to_string();
                out.message = first_text(&map, &["error_description", "message"]);
                out.structured = true;
            }
            _ => {
                out.code = first_text(&map, &["code", "errorCode", "error_code"]);
                out.message = first_text(&map, &["message", "error_description"]);
                out.structured = !out.code.is_empty() || !out.message.is_empty();
            }
        }
        out.aadsts = get_ci(&map, "error_codes")
            .and_then(Value::as_array)
            .and_then(|codes| codes.first())
            .and_then(|c| match c {
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .or_else(|| aadsts_in(&out.message));
    }
    if out.message.is_empty() {
        out.message = truncate_raw(trimmed);
    } else {
        out.message = truncate_raw(&out.message);
    }
    out
}

/// A code for the error: the body's, or the status's reason phrase.
fn code_or_reason(code: String, status: StatusCode) -> String {
    if code.is_empty() {
        status
            .canonical_reason()
            .map(|r| r.replace(' ', ""))
            .unwrap_or_else(|| format!("HTTP{}", status.as_u16()))
    } else {
        code
    }
}

fn message_or_reason(message: String, status: StatusCode) -> String {
    if message.is_empty() {
        format!(
            "HTTP {} with an empty body.",
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        message
    }
}

/// The error for a non-2xx answer of Entra ID's token endpoint (after
/// retries; a 429 has already become `Throttled`).
pub(crate) fn entra_error(status: StatusCode, body: &[u8]) -> AzureError {
    let parsed = parse_error_body(body);
    if status.is_client_error() && parsed.structured {
        let kind = parsed
            .aadsts
            .map(CredentialErrorKind::from_aadsts)
            .unwrap_or(CredentialErrorKind::Other);
        return AzureError::Credential {
            kind,
            code: parsed.aadsts,
            message: message_or_reason(parsed.message, status),
        };
    }
    AzureError::Service {
        status: status.as_u16(),
        code: code_or_reason(parsed.code, status),
        message: message_or_reason(parsed.message, status),
    }
}

/// The error for a non-2xx answer of Azure Resource Manager (after retries;
/// a 429 has already become `Throttled`).
pub(crate) fn arm_error(status: StatusCode, body: &[u8]) -> AzureError {
    let parsed = parse_error_body(body);
    let code = code_or_reason(parsed.code, status);
    let message = message_or_reason(parsed.message, status);
    match status {
        StatusCode::UNAUTHORIZED => AzureError::Unauthorized { code, message },
        StatusCode::FORBIDDEN => AzureError::Forbidden { code, message },
        StatusCode::NOT_FOUND => AzureError::NotFound { code, message },
        _ => AzureError::Service {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ErrorBody {
        parse_error_body(s.as_bytes())
    }

    #[test]
    fn reads_arm_bodies() {
        let b = parse(
            r#"{"error":{"code":"AuthorizationFailed","message":"no","details":"a string"}}"#,
        );
        assert_eq!(b.code, "AuthorizationFailed");
        assert_eq!(b.message, "no");
        let b = parse(r#"{"code":"404","message":"gone"}"#);
        assert_eq!((b.code.as_str(), b.message.as_str()), ("404", "gone"));
        let b = parse(r#"{"error":{"code":404,"message":null}}"#);
        assert_eq!(b.code, "404");
        assert_eq!(b.message, r#"{"error":{"code":404,"message":null}}"#);
        let b = parse(r#"{"HttpStatusCode":404,"ErrorCode":"NotFound","Message":"Not there"}"#);
        assert_eq!(
            (b.code.as_str(), b.message.as_str()),
            ("NotFound", "Not there")
        );
    }

    #[test]
    fn reads_entra_bodies() {
        let b = parse(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
        );
        assert_eq!(b.code, "invalid_client");
        assert_eq!(b.aadsts, Some(7000215));
        let b = parse(
            r#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found."}"#,
        );
        assert_eq!(b.aadsts, Some(90002));
        let e = entra_error(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: x","error_codes":["7000215"]}"#,
        );
        assert!(matches!(
            e,
            AzureError::Credential {
                kind: CredentialErrorKind::WrongSecret,
                code: Some(7000215),
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "the client secret is wrong (AADSTS7000215): paste the secret's value, not its id"
        );
    }

    #[test]
    fn survives_odd_bodies() {
        for body in [
            "",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
            "[1,2,3]",
            "\"just a string\"",
            "{\"error\":",
            "{\"error\":[1]}",
            "{}",
            "AADSTS",
            "AADSTS99999999999999",
        ] {
            let b = parse(body);
            assert!(b.message.len() <= MAX_RAW + 4, "{body}");
            let _ = arm_error(StatusCode::BAD_GATEWAY, body.as_bytes()).to_string();
            let _ = entra_error(StatusCode::BAD_REQUEST, body.as_bytes()).to_string();
        }
        let html = arm_error(StatusCode::BAD_GATEWAY, b"<html>oops</html>");
        match html {
            AzureError::Service {
                status,
                code,
                message,
            } => {
                assert_eq!(status, 502);
                assert_eq!(code, "BadGateway");
                assert_eq!(message, "<html>oops</html>");
            }
            other => panic!("{other:?}"),
        }
        let empty = arm_error(StatusCode::FORBIDDEN, b"");
        assert!(matches!(empty, AzureError::Forbidden { .. }));
        let non_utf8 = parse_error_body(&[0xff, 0xfe, b'{']);
        assert!(!non_utf8.message.is_empty());
    }

    #[test]
    fn truncates_raw_bodies_on_char_boundaries() {
        let long = "é".repeat(3000);
        let t = truncate_raw(&long);
        assert!(t.len() <= MAX_RAW + "…".len());
        assert!(t.ends_with('…'));
        let b = parse(&long);
        assert!(b.message.len() <= MAX_RAW + "…".len());
    }

    #[test]
    fn maps_aadsts_codes() {
        use CredentialErrorKind::*;
        for (code, kind) in [
            (7000215, WrongSecret),
            (7000222, ExpiredSecret),
            (700016, UnknownApplication),
            (90002, UnknownTenant),
            (65001, ConsentMissing),
            (500011, Other),
        ] {
            assert_eq!(CredentialErrorKind::from_aadsts(code), kind);
        }
        let e = entra_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_scope","error_description":"AADSTS1002012: bad scope"}"#,
        );
        assert_eq!(
            e.to_string(),
            "Entra ID refused the credential (AADSTS1002012): AADSTS1002012: bad scope"
        );
        let transient = entra_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"temporarily_unavailable","error_description":"AADSTS90033: try again","error_codes":[90033]}"#,
        );
        assert!(matches!(transient, AzureError::Service { status: 500, .. }));
    }
}
