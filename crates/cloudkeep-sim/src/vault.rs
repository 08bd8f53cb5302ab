//! Key Vault's data plane at `https://{vault}.vault.azure.net`, routed by
//! host name: keys, key versions, rotation policies and secrets' metadata
//! (never values). It checks what the data plane checks: the bearer token
//! (a 401 challenge naming the tenant and `https://vault.azure.net`), the
//! api-version, the vault's public network access, and the caller's
//! data-plane access (a role with data actions on an RBAC vault, an access
//! policy otherwise), answering Key Vault's own error bodies. Rotation
//! policy actions are spelt `Rotate`/`Notify` here; ARM spells them lower-case.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::arm::{decode_offset, encode_offset};
use crate::server::{Caller, json};
use crate::state::SimState;
use crate::token::Claims;
use crate::world::{Extra, Resource, VaultKey, VaultProps, VaultSecret, World, hash_str, mix};

pub const VAULT_AUDIENCE: &str = "https://vault.azure.net";
const AUDIENCES: &[&str] = &[
    "https://vault.azure.net",
    "https://vault.azure.net/",
    "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
];
/// Data-plane api-versions the SDKs send.
const VERSIONS: &[&str] = &[
    "2016-10-01",
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
];
const MAX_RESULTS: usize = 25;

/// A data-plane error: status, code, message and an inner code.
struct KvError {
    status: StatusCode,
    code: &'static str,
    message: String,
    inner: Option<&'static str>,
    challenge: Option<String>,
}

impl KvError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        KvError {
            status,
            code,
            message: message.into(),
            inner: None,
            challenge: None,
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(inner) = self.inner {
            error["innererror"] = json!({ "code": inner });
        }
        let mut r = json(self.status, &json!({ "error": error }));
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            r.headers_mut().insert("www-authenticate", c);
        }
        r
    }
}

/// The request as the data plane sees it.
struct Call<'a> {
    world: &'a World,
    vault: &'a Resource,
    props: &'a VaultProps,
    /// `https://{vault}.vault.azure.net`
    base: String,
    /// The request's path, for `nextLink`s.
    path: String,
    query: Vec<(String, String)>,
    api_version: String,
    claims: Claims,
}

pub async fn dispatch(
    State(st): State<Arc<SimState>>,
    vault: String,
    req: Request,
) -> Response<Body> {
    let (parts, _) = req.into_parts();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let mut caller = None;
    let mut response =
        serve(&st, &vault, &parts, query, &mut caller).unwrap_or_else(KvError::into_response);
    let id = st.random_id();
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-ms-request-id", v);
    }
    response.headers_mut().insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static("1.9.2318.1"),
    );
    if let Some(oid) = caller {
        response.extensions_mut().insert(Caller(oid));
    }
    response
}

fn serve(
    st: &SimState,
    vault_name: &str,
    parts: &axum::http::request::Parts,
    query: Vec<(String, String)>,
    caller: &mut Option<String>,
) -> Result<Response<Body>, KvError> {
    let world = st.world();
    let vault = world
        .live_resources()
        .find(|r| matches!(r.extra, Extra::Vault(_)) && r.name.eq_ignore_ascii_case(vault_name))
        .ok_or_else(|| {
            KvError::new(
                StatusCode::NOT_FOUND,
                "VaultNotFound",
                format!("The vault '{vault_name}' does not exist."),
            )
        })?;
    let Extra::Vault(props) = &vault.extra else {
        return Err(KvError::new(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            "no vault",
        ));
    };
    let tenant = world
        .subscription(&vault.subscription_id)
        .map(|s| s.tenant_id.clone())
        .unwrap_or_default();
    let unauthorized = |message: String| KvError {
        challenge: Some(format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{tenant}\", resource=\"{VAULT_AUDIENCE}\""
        )),
        ..KvError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    };
    let token = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            unauthorized("AKV10000: Request is missing a Bearer or PoP token.".into())
        })?;
    let claims = st.signer.verify(token.trim()).map_err(|_| {
        unauthorized("AKV10005: Error validating token: token is malformed.".into())
    })?;
    *caller = Some(claims.oid.clone());
    if claims.exp <= chrono::Utc::now().timestamp() {
        return Err(unauthorized("AKV10012: Token is expired.".into()));
    }
    if !AUDIENCES.contains(&claims.aud.as_str()) {
        return Err(unauthorized(format!(
            "AKV10022: Invalid audience. Expected {VAULT_AUDIENCE}, found: {}.",
            claims.aud
        )));
    }
    if !claims.tid.eq_ignore_ascii_case(&tenant) {
        return Err(unauthorized(format!(
            "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, found https://sts.windows.net/{}/.",
            claims.tid
        )));
    }
    let api_version = query
        .iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if !VERSIONS.contains(&api_version.as_str()) {
        return Err(KvError::new(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            format!(
                "The specified version ({api_version}) is not recognized. Consider using the latest supported version (7.6)."
            ),
        ));
    }
    let call = Call {
        world: &world,
        vault,
        props,
        base: format!("https://{}.vault.azure.net", vault.name),
        path: parts.uri.path().to_string(),
        query,
        api_version,
        claims,
    };
    if props.public_network_access == Some("Disabled") {
        return Err(KvError {
            inner: Some("ForbiddenByConnection"),
            ..KvError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "Public network access is disabled and request is not from a trusted service nor via an approved private link.\r\nCaller: {}\r\nVault: {};location={}",
                    call.caller_text(),
                    vault.name,
                    vault.location
                ),
            )
        });
    }
    if parts.method != Method::GET {
        return Err(KvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            format!("The method '{}' is not supported here.", parts.method),
        ));
    }
    let segs: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match l.as_slice() {
        ["keys"] => {
            call.allow("Microsoft.KeyVault/vaults/keys/read", "keys", "list")?;
            let keys = call.keys();
            call.page(&keys, |k| call.key_item(k))
        }
        ["keys", _, "versions"] => {
            call.allow("Microsoft.KeyVault/vaults/keys/read", "keys", "list")?;
            let key = call.key(segs[1])?;
            let versions = versions_of(key);
            call.page(&versions, |v| call.version_item(key, v))
        }
        ["keys", _, "rotationpolicy"] => {
            call.allow(
                "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
                "keys",
                "getrotationpolicy",
            )?;
            let key = call.key(segs[1])?;
            Ok(json(StatusCode::OK, &call.rotation_policy(key)))
        }
        ["keys", _] | ["keys", _, _] => {
            call.allow("Microsoft.KeyVault/vaults/keys/read", "keys", "get")?;
            let key = call.key(segs[1])?;
            let version = segs.get(2).copied().unwrap_or(&key.version);
            let v = versions_of(key)
                .into_iter()
                .find(|v| v.version.eq_ignore_ascii_case(version))
                .ok_or_else(|| {
                    KvError::new(
                        StatusCode::NOT_FOUND,
                        "KeyNotFound",
                        format!(
                            "A key with (name/id) {}/{version} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
                            key.name
                        ),
                    )
                })?;
            Ok(json(StatusCode::OK, &call.key_bundle(key, &v)))
        }
        ["secrets"] => {
            call.allow(
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                "secrets",
                "list",
            )?;
            let secrets = call.secrets();
            call.page(&secrets, |s| call.secret_item(s))
        }
        ["secrets", _, "versions"] => {
            call.allow(
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                "secrets",
                "list",
            )?;
            let name = segs[1];
            let secrets: Vec<&VaultSecret> = call
                .secrets()
                .into_iter()
                .filter(|s| s.name.eq_ignore_ascii_case(name))
                .collect();
            if secrets.is_empty() {
                return Err(KvError::new(
                    StatusCode::NOT_FOUND,
                    "SecretNotFound",
                    format!("A secret with (name/id) {name} was not found in this key vault."),
                ));
            }
            call.page(&secrets, |s| {
                let mut item = call.secret_item(s);
                item["id"] = json!(format!("{}/secrets/{}/{}", call.base, s.name, s.version));
                item
            })
        }
        _ => Err(KvError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "The path '{}' is not served by the simulator's Key Vault.",
                parts.uri.path()
            ),
        )),
    }
}

/// One version of a key: the current one and those it replaced.
struct KeyVersion {
    version: String,
    created: i64,
    updated: i64,
    expires: Option<i64>,
    enabled: bool,
}

/// A key's versions, newest first: the current one, and up to two older
/// ones derived from its name (a rotated key keeps its history).
fn versions_of(k: &VaultKey) -> Vec<KeyVersion> {
    let h = hash_str(0x006b_6579, &format!("{}/{}", k.vault_id, k.name));
    let mut out = vec![KeyVersion {
        version: k.version.clone(),
        created: k.created,
        updated: k.updated,
        expires: k.expires,
        enabled: k.enabled,
    }];
    for i in 0..(h % 3) {
        let created = k.created - (i as i64 + 1) * 90 * 86_400;
        out.push(KeyVersion {
            version: format!("{:016x}{:016x}", mix(h ^ i), mix(h ^ i ^ 0xff)),
            created,
            updated: created,
            expires: None,
            enabled: true,
        });
    }
    out
}

impl Call<'_> {
    fn caller_text(&self) -> String {
        format!(
            "appid={};oid={};iss=https://sts.windows.net/{}/",
            self.claims.appid.clone().unwrap_or_default(),
            self.claims.oid,
            self.claims.tid
        )
    }

    /// Data-plane access: a role's data action on an RBAC vault, an access
    /// policy on the others.
    fn allow(&self, data_action: &str, kind: &str, permission: &str) -> Result<(), KvError> {
        let rbac = self.props.enable_rbac_authorization == Some(true);
        let allowed = if rbac {
            self.world
                .roles_at(&self.claims.oid, &self.vault.id)
                .any(|a| {
                    self.world
                        .role_permits_data(&a.role_definition_id, data_action)
                })
        } else {
            self.props
                .access_policy_object_ids
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&self.claims.oid))
        };
        if allowed {
            return Ok(());
        }
        let vault = format!("{};location={}", self.vault.name, self.vault.location);
        Err(if rbac {
            KvError {
                inner: Some("ForbiddenByRbac"),
                ..KvError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: {}\r\nAction: '{data_action}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {vault}\r\n",
                        self.caller_text(),
                        self.vault.id.to_ascii_lowercase()
                    ),
                )
            }
        } else {
            KvError {
                inner: Some("AccessDenied"),
                ..KvError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "The user, group or application '{}' does not have {kind} {permission} permission on key vault '{vault}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                        self.caller_text()
                    ),
                )
            }
        })
    }

    fn keys(&self) -> Vec<&VaultKey> {
        self.world
            .keys
            .iter()
            .filter(|k| k.vault_id.eq_ignore_ascii_case(&self.vault.id))
            .collect()
    }

    fn key(&self, name: &str) -> Result<&VaultKey, KvError> {
        self.keys()
            .into_iter()
            .find(|k| k.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                KvError::new(
                    StatusCode::NOT_FOUND,
                    "KeyNotFound",
                    format!("A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
                )
            })
    }

    fn secrets(&self) -> Vec<&VaultSecret> {
        self.world
            .secrets
            .iter()
            .filter(|s| s.vault_id.eq_ignore_ascii_case(&self.vault.id))
            .collect()
    }

    fn attributes(&self, enabled: bool, created: i64, updated: i64, exp: Option<i64>) -> Value {
        let purge = self.props.enable_purge_protection == Some(true);
        let mut a = json!({
            "enabled": enabled,
            "created": created,
            "updated": updated,
            "recoveryLevel": if purge { "Recoverable" } else { "Recoverable+Purgeable" },
            "recoverableDays": 90,
        });
        if let Some(e) = exp {
            a["exp"] = json!(e);
        }
        a
    }

    fn key_item(&self, k: &VaultKey) -> Value {
        json!({
            "kid": format!("{}/keys/{}", self.base, k.name),
            "attributes": self.attributes(k.enabled, k.created, k.updated, k.expires),
            "tags": {},
        })
    }

    fn version_item(&self, k: &VaultKey, v: &KeyVersion) -> Value {
        json!({
            "kid": format!("{}/keys/{}/{}", self.base, k.name, v.version),
            "attributes": self.attributes(v.enabled, v.created, v.updated, v.expires),
            "tags": {},
        })
    }

    fn key_bundle(&self, k: &VaultKey, v: &KeyVersion) -> Value {
        let h = hash_str(0x006a_776b, &format!("{}/{}", k.name, v.version));
        let bytes = |n: usize, salt: u64| -> String {
            let raw: Vec<u8> = (0..n)
                .map(|i| (mix(h ^ salt ^ i as u64) & 0xff) as u8)
                .collect();
            URL_SAFE_NO_PAD.encode(raw)
        };
        let mut key = json!({
            "kid": format!("{}/keys/{}/{}", self.base, k.name, v.version),
            "kty": k.kty,
            "key_ops": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
        });
        if k.kty == "RSA" {
            key["n"] = json!(bytes(k.key_size.unwrap_or(2048) as usize / 8, 1));
            key["e"] = json!("AQAB");
        } else {
            key["crv"] = json!(k.curve.unwrap_or("P-256"));
            key["x"] = json!(bytes(32, 2));
            key["y"] = json!(bytes(32, 3));
            key["key_ops"] = json!(["sign", "verify"]);
        }
        json!({
            "key": key,
            "attributes": self.attributes(v.enabled, v.created, v.updated, v.expires),
            "tags": {},
        })
    }

    /// The data plane's rotation policy: actions `Rotate` and `Notify`. A
    /// key without one answers the default policy (notify 30 days before
    /// expiry), as Key Vault does.
    fn rotation_policy(&self, k: &VaultKey) -> Value {
        let id = format!("{}/keys/{}/rotationpolicy", self.base, k.name);
        let Some(p) = &k.rotation_policy else {
            return json!({
                "id": id,
                "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
                "attributes": {},
            });
        };
        let mut actions = Vec::new();
        if let Some(t) = &p.time_after_create {
            actions.push(json!({"trigger": {"timeAfterCreate": t}, "action": {"type": "Rotate"}}));
        }
        if let Some(t) = &p.time_before_expiry {
            actions.push(json!({"trigger": {"timeBeforeExpiry": t}, "action": {"type": "Rotate"}}));
        }
        actions
            .push(json!({"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}));
        let mut attributes = json!({"created": k.created, "updated": k.updated});
        if let Some(e) = &p.expiry_time {
            attributes["expiryTime"] = json!(e);
        }
        json!({"id": id, "lifetimeActions": actions, "attributes": attributes})
    }

    fn secret_item(&self, s: &VaultSecret) -> Value {
        let mut item = json!({
            "id": format!("{}/secrets/{}", self.base, s.name),
            "attributes": self.attributes(s.enabled, s.created, s.updated, s.expires),
            "tags": {},
        });
        if let Some(ct) = s.content_type {
            item["contentType"] = json!(ct);
        }
        item
    }

    /// A page of `maxresults` (at most 25), with the data plane's
    /// `nextLink` (port 443 spelt out, as Key Vault writes it), `null` on
    /// the last page.
    fn page<T>(
        &self,
        items: &[T],
        render: impl Fn(&T) -> Value,
    ) -> Result<Response<Body>, KvError> {
        let q = |name: &str| {
            self.query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let top = match q("maxresults") {
            Some(m) => m
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_RESULTS).contains(n))
                .ok_or_else(|| {
                    KvError::new(
                        StatusCode::BAD_REQUEST,
                        "BadParameter",
                        format!(
                            "The value '{m}' of maxresults is not valid: it is between 1 and 25."
                        ),
                    )
                })?,
            None => MAX_RESULTS,
        };
        let offset = match q("$skiptoken") {
            Some(t) => decode_offset(t).ok_or_else(|| {
                KvError::new(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "The $skiptoken is not valid.",
                )
            })?,
            None => 0,
        }
        .min(items.len());
        let end = (offset + top).min(items.len());
        let value: Vec<Value> = items[offset..end].iter().map(render).collect();
        let next = (end < items.len()).then(|| {
            format!(
                "{}:443{}?api-version={}&$skiptoken={}&maxresults={top}",
                self.base,
                self.path,
                self.api_version,
                encode_offset(end)
            )
        });
        Ok(json(
            StatusCode::OK,
            &json!({ "value": value, "nextLink": next }),
        ))
    }
}
