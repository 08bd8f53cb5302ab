//! Entra ID's client-credentials grant: the token request, validation of
//! its answer, and reading the tenant and object id from the token's claims.

use std::fmt;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use cloudkeep_domain::SecretString;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::{AzureClient, Policy};
use crate::error::{AzureError, CredentialErrorKind, entra_error, truncate_raw};

/// The scope of an app-only token for Azure Resource Manager.
pub(crate) const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// An access token for Azure Resource Manager. `Debug` never shows the
/// token itself.
#[derive(Clone)]
pub struct AccessToken {
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
    /// The tenant that issued it (the `tid` claim, else the tenant asked).
    pub tenant_id: String,
    /// the `oid` claim (decode the JWT payload without verifying; a token that is not a JWT leaves it empty)
    pub object_id: String,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("tenant_id", &self.tenant_id)
            .field("object_id", &self.object_id)
            .finish()
    }
}

impl AccessToken {
    /// Whether the token expires within `margin` from now (or already has):
    /// time to get a new one.
    pub fn expires_within(&self, margin: std::time::Duration) -> bool {
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
        Utc::now()
            .checked_add_signed(margin)
            .is_none_or(|deadline| self.expires_at <= deadline)
    }
}

/// The claims of a JWT, unverified; `None` for anything that is not one.
fn claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let raw = engine.decode(payload).ok()?;
    match serde_json::from_slice(&raw).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn claim(claims: Option<&serde_json::Map<String, Value>>, name: &str) -> String {
    claims
        .and_then(|c| c.get(name))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `expires_in` as Entra sends it: a number, or a number in a string.
fn seconds(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && (0.0..1e12).contains(&secs)).then_some(secs as i64)
}

/// Validates a token endpoint's 2xx body.
pub(crate) fn parse_token(body: &[u8], tenant_asked: &str) -> Result<AccessToken, AzureError> {
    let malformed = |why: &str| {
        let text = String::from_utf8_lossy(body);
        // Never echo a body that may hold a token, even a broken one.
        let shown = if text.contains("access_token") || text.contains("eyJ") {
            format!("({} bytes withheld: they may hold a token)", body.len())
        } else {
            truncate_raw(&text)
        };
        AzureError::Malformed(format!("the token endpoint's answer {why}: {shown}"))
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(malformed("is not a JSON object"));
    };
    let token = match map.get("access_token") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.trim().to_string(),
        _ => return Err(malformed("has no access_token")),
    };
    if let Some(kind) = map.get("token_type").and_then(Value::as_str) {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(AzureError::Malformed(format!(
                "the token endpoint issued a '{kind}' token, not a Bearer token"
            )));
        }
    }
    let expires_in = map
        .get("expires_in")
        .and_then(seconds)
        .ok_or_else(|| malformed("has no usable expires_in"))?;
    let expires_at = Utc::now()
        .checked_add_signed(chrono::Duration::seconds(expires_in))
        .ok_or_else(|| malformed("has an expires_in out of range"))?;
    let claims = claims(&token);
    let tid = claim(claims.as_ref(), "tid");
    Ok(AccessToken {
        object_id: claim(claims.as_ref(), "oid"),
        tenant_id: if tid.is_empty() {
            tenant_asked.to_string()
        } else {
            tid
        },
        expires_at,
        token: SecretString::new(token),
    })
}

impl AzureClient {
    /// Client-credentials token for ARM (scope https://management.azure.com/.default).
    pub async fn client_credentials_token(
        &self,
        tenant_id: &str,
        client_id: &str,
        secret: &SecretString,
    ) -> Result<AccessToken, AzureError> {
        let tenant_id = tenant_id.trim();
        let client_id = client_id.trim();
        let refuse = |kind, message: &str| AzureError::Credential {
            kind,
            code: None,
            message: message.to_string(),
        };
        if tenant_id.is_empty() {
            return Err(refuse(
                CredentialErrorKind::UnknownTenant,
                "the tenant id is empty",
            ));
        }
        if client_id.is_empty() {
            return Err(refuse(
                CredentialErrorKind::UnknownApplication,
                "the client id is empty",
            ));
        }
        if secret.expose().trim().is_empty() {
            return Err(refuse(
                CredentialErrorKind::WrongSecret,
                "the client secret is empty",
            ));
        }
        let url = self.authority_url(&[tenant_id, "oauth2", "v2.0", "token"])?;
        let answer = self
            .send(Method::POST, &url, |request| {
                request
                    .header(reqwest::header::ACCEPT, "application/json")
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("client_secret", secret.expose()),
                        ("scope", ARM_SCOPE),
                    ])
            })
            .await?;
        if !answer.status.is_success() {
            let error = entra_error(answer.status, &answer.body);
            tracing::info!(tenant_id, client_id, status = answer.status.as_u16(), %error, "token request refused");
            return Err(error);
        }
        let token = parse_token(&answer.body, tenant_id)?;
        tracing::debug!(tenant_id = %token.tenant_id, object_id = %token.object_id, expires_at = %token.expires_at, "token issued");
        Ok(token)
    }
}

/// The delegated scope the consent flow asks for: Resource Manager on the
/// signed-in user's behalf.
pub const ARM_USER_SCOPE: &str = "https://management.azure.com/user_impersonation";

/// A PKCE pair (RFC 7636, S256): the verifier stays with cloudkeep, the
/// challenge goes in the authorisation request.
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let verifier = engine.encode(rand::random::<[u8; 32]>());
        let challenge = engine.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier: SecretString::new(verifier),
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// What an authorisation-code sign-in needs besides the code.
pub struct CodeRedemption<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub redirect_uri: &'a str,
    pub verifier: &'a SecretString,
}

impl AzureClient {
    /// The URL that sends a browser to Entra ID's sign-in for the
    /// authorisation-code flow with PKCE (S256). `tenant` may be
    /// `organizations` when the user's tenant is not known yet.
    pub fn authorize_url(
        &self,
        tenant: &str,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> Result<reqwest::Url, AzureError> {
        let mut url = self.authority_url(&[tenant.trim(), "oauth2", "v2.0", "authorize"])?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", ARM_USER_SCOPE)
            .append_pair("state", state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra);
        Ok(url)
    }

    /// Redeems an authorisation code for a delegated Resource Manager token.
    /// A code is good once, so the request is never retried.
    pub async fn redeem_code(
        &self,
        tenant: &str,
        code: &SecretString,
        with: CodeRedemption<'_>,
    ) -> Result<AccessToken, AzureError> {
        let url = self.authority_url(&[tenant.trim(), "oauth2", "v2.0", "token"])?;
        let no_retries = Policy {
            max_retries: 0,
            ..Policy::default()
        };
        let answer = self
            .send_with(Method::POST, &url, no_retries, |request| {
                request
                    .header(reqwest::header::ACCEPT, "application/json")
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("client_id", with.client_id),
                        ("client_secret", with.client_secret.expose()),
                        ("code", code.expose()),
                        ("redirect_uri", with.redirect_uri),
                        ("code_verifier", with.verifier.expose()),
                        ("scope", ARM_USER_SCOPE),
                    ])
            })
            .await?;
        if !answer.status.is_success() {
            let error = entra_error(answer.status, &answer.body);
            tracing::info!(status = answer.status.as_u16(), %error, "authorisation code refused");
            return Err(error);
        }
        parse_token(&answer.body, tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let token = AccessToken {
            token: SecretString::new("eyJ.super-secret-token-value.sig"),
            expires_at: Utc::now(),
            tenant_id: "t".into(),
            object_id: "o".into(),
        };
        let shown = format!("{token:?} {token:#?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert!(shown.contains("object_id"));
    }

    #[test]
    fn reads_claims_from_a_jwt() {
        let t = jwt(r#"{"oid":"object-1","tid":"tenant-1"}"#);
        let body = format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{t}"}}"#);
        let token = parse_token(body.as_bytes(), "contoso.onmicrosoft.com").expect("token");
        assert_eq!(token.object_id, "object-1");
        assert_eq!(token.tenant_id, "tenant-1");
        assert_eq!(token.token.expose(), t);
        let left = token.expires_at - Utc::now();
        assert!(left.num_seconds() > 3500 && left.num_seconds() <= 3599);
        assert!(!token.expires_within(std::time::Duration::from_secs(60)));
        assert!(token.expires_within(std::time::Duration::from_secs(3600)));
    }

    #[test]
    fn tolerates_tokens_that_are_not_jwts() {
        for t in ["opaque", "a.b.c", "a.!!!.c", "a.b.c.d", ""] {
            let body = format!(r#"{{"expires_in":"3599","access_token":"{t}x"}}"#);
            let token = parse_token(body.as_bytes(), "tenant").expect("token");
            assert_eq!(token.object_id, "");
            assert_eq!(token.tenant_id, "tenant");
        }
        let padded = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"oid":"o"}"#)
        );
        let body = format!(r#"{{"expires_in":60,"access_token":"{padded}"}}"#);
        assert_eq!(
            parse_token(body.as_bytes(), "t").expect("token").object_id,
            "o"
        );
    }

    #[test]
    fn rejects_malformed_token_answers() {
        for body in [
            "",
            "<html></html>",
            "[]",
            r#"{"expires_in":3599}"#,
            r#"{"access_token":"","expires_in":3599}"#,
            r#"{"access_token":"x"}"#,
            r#"{"access_token":"x","expires_in":"soon"}"#,
            r#"{"access_token":"x","expires_in":-5}"#,
            r#"{"access_token":"x","expires_in":null}"#,
            r#"{"access_token":"x","expires_in":1e300}"#,
            r#"{"access_token":"x","expires_in":3599,"token_type":"pop"}"#,
        ] {
            match parse_token(body.as_bytes(), "t") {
                Err(AzureError::Malformed(m)) => {
                    assert!(!m.contains("\"x\""), "{m}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let secret_in_body = r#"{"access_token":"topsecret"}"#;
        let Err(e) = parse_token(secret_in_body.as_bytes(), "t") else {
            panic!("accepted");
        };
        assert!(!e.to_string().contains("topsecret"));
    }
}
