//! Entra ID: discovery documents, the v2.0 token endpoint (client
//! credentials; authorisation code with PKCE), the sign-in page and admin
//! consent, with Entra's error bodies and AADSTS codes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::server::{Caller, base_url, json};
use crate::state::{AuthCode, SimState};
use crate::token::{Claims, IdClaims};
use crate::world::{Principal, PrincipalKind, World};

type St = State<Arc<SimState>>;

/// Authorisation codes live this long, as Entra's do.
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// Scopes accepted for ARM, and the audience each yields.
fn arm_audience(scope: &str) -> Option<&'static str> {
    let s = scope.trim().to_ascii_lowercase();
    let resource = s
        .strip_suffix("/.default")
        .or_else(|| s.strip_suffix("/user_impersonation"))?;
    match resource.trim_end_matches('/') {
        "https://management.azure.com" => Some("https://management.azure.com"),
        "https://management.core.windows.net" => Some("https://management.core.windows.net/"),
        _ => None,
    }
}

/// Scopes accepted for client credentials, and the audience each yields:
/// ARM, Microsoft Graph and Key Vault's data plane.
fn audience(scope: &str) -> Option<&'static str> {
    if let Some(a) = arm_audience(scope) {
        return Some(a);
    }
    let s = scope.trim().to_ascii_lowercase();
    match s.strip_suffix("/.default")?.trim_end_matches('/') {
        "https://graph.microsoft.com" | "00000003-0000-0000-c000-000000000000" => {
            Some("https://graph.microsoft.com")
        }
        "https://vault.azure.net" | "cfa8b339-82a2-471a-a3c9-0fc0be7a4093" => {
            Some(crate::vault::VAULT_AUDIENCE)
        }
        _ => None,
    }
}

fn entra_error(status: StatusCode, error: &str, code: u32, message: &str) -> Response<Body> {
    let trace = uuid::Uuid::new_v4();
    let correlation = uuid::Uuid::new_v4();
    let now = Utc::now();
    let ts = now.format("%Y-%m-%d %H:%M:%SZ");
    json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts.to_string(),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

fn tenant_not_found(tenant: &str) -> Response<Body> {
    entra_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

fn missing(param: &str) -> Response<Body> {
    entra_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{param}'."),
    )
}

fn is_tenant_alias(t: &str) -> bool {
    matches!(
        t.to_ascii_lowercase().as_str(),
        "common" | "organizations" | "consumers"
    )
}

pub async fn openid_configuration(
    State(st): St,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response<Body> {
    let base = base_url(&headers, &uri);
    let tid = if is_tenant_alias(&tenant) {
        "{tenantid}".to_string()
    } else {
        match st.world().tenant(&tenant) {
            Some(t) => t.id.clone(),
            None => return tenant_not_found(&tenant),
        }
    };
    json(
        StatusCode::OK,
        &json!({
            "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{base}/{tid}/v2.0"),
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": format!("{base}/{tenant}/kerberos"),
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }),
    )
}

pub async fn discovery_instance(headers: HeaderMap, uri: Uri) -> Response<Body> {
    let base = base_url(&headers, &uri);
    let host = base.trim_start_matches("https://").to_string();
    json(
        StatusCode::OK,
        &json!({
            "tenant_discovery_endpoint": format!("{base}/common/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [{
                "preferred_network": host,
                "preferred_cache": host,
                "aliases": [host],
            }],
        }),
    )
}

/// The cloud metadata document Azure CLI reads (`/metadata/endpoints`).
pub async fn metadata_endpoints(headers: HeaderMap, uri: Uri) -> Response<Body> {
    let base = base_url(&headers, &uri);
    let host = base.trim_start_matches("https://");
    json(
        StatusCode::OK,
        &json!([{
            "portal": base,
            "authentication": {
                "loginEndpoint": format!("{base}/"),
                "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "media": base,
            "graphAudience": "https://graph.windows.net/",
            "graph": "https://graph.windows.net/",
            "name": "AzureCloud",
            "suffixes": {
                "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
                "acrLoginServer": "azurecr.io",
                "sqlServerHostname": "database.windows.net",
                "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
                "keyVaultDns": "vault.azure.net",
                "storage": "core.windows.net",
                "azureFrontDoorEndpointSuffix": "azurefd.net",
                "storageSyncEndpointSuffix": "afs.azure.net",
                "mhsmDns": "managedhsm.azure.net",
                "mysqlServerEndpoint": "mysql.database.azure.com",
                "postgresqlServerEndpoint": "postgres.database.azure.com",
                "mariadbServerEndpoint": "mariadb.database.azure.com",
                "synapseAnalytics": "dev.azuresynapse.net",
                "attestationEndpoint": "attest.azure.net",
            },
            "batch": "https://batch.core.windows.net/",
            "resourceManager": format!("{base}/"),
            "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/arm-compute/quickstart-templates/aliases.json",
            "activeDirectoryDataLake": "https://datalake.azure.net/",
            "sqlManagement": "https://management.core.windows.net:8443/",
            "gallery": "https://gallery.azure.com/",
            "microsoftGraphResourceId": "https://graph.microsoft.com/",
            "host": host,
        }]),
    )
}

pub async fn jwks(State(st): St) -> Response<Body> {
    json(StatusCode::OK, &st.signer.jwks())
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Client id and secret from HTTP Basic authentication, if present.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

pub async fn token(
    State(st): St,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response<Body> {
    let mut params = form(&body);
    if let Some((id, secret)) = basic_auth(&headers) {
        params.entry("client_id".into()).or_insert(id);
        params.entry("client_secret".into()).or_insert(secret);
    }
    let Some(grant_type) = params.get("grant_type").cloned() else {
        return missing("grant_type");
    };
    let tenant_id = {
        let world = st.world();
        match world.tenant(&tenant) {
            Some(t) => t.id.clone(),
            None if is_tenant_alias(&tenant) && grant_type == "authorization_code" => String::new(),
            None => return tenant_not_found(&tenant),
        }
    };
    match grant_type.as_str() {
        "client_credentials" => client_credentials(&st, &tenant_id, &params),
        "authorization_code" => {
            authorization_code(&st, &tenant_id, &params, &base_url(&headers, &uri))
        }
        other => entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

/// Checks an application's secret; answers Entra's error when it is wrong.
fn secret_error(
    world: &World,
    client_id: &str,
    own: Option<&crate::world::ClientSecret>,
    given: Option<&String>,
) -> Option<Response<Body>> {
    let secret = own.unwrap_or(&world.app.secret);
    let Some(given) = given else {
        return Some(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    if given != &secret.value {
        return Some(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    if secret.expires <= Utc::now() {
        return Some(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            &format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        ));
    }
    None
}

fn app_not_found(client_id: &str, tenant_name: &str) -> Response<Body> {
    entra_error(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        &format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ),
    )
}

fn service_principal<'w>(
    world: &'w World,
    tenant_id: &str,
    client_id: &str,
) -> Option<&'w Principal> {
    world.principals.iter().find(|p| {
        p.tenant_id.eq_ignore_ascii_case(tenant_id)
            && matches!(&p.kind, PrincipalKind::ServicePrincipal { client_id: c, .. } if c.eq_ignore_ascii_case(client_id))
    })
}

fn client_credentials(
    st: &SimState,
    tenant_id: &str,
    params: &HashMap<String, String>,
) -> Response<Body> {
    let Some(client_id) = params.get("client_id") else {
        return missing("client_id");
    };
    let Some(scope) = params.get("scope") else {
        return missing("scope");
    };
    if !scope.trim().to_ascii_lowercase().ends_with("/.default") {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    let world = st.world();
    let tenant_name = world
        .tenant(tenant_id)
        .map(|t| t.display_name.clone())
        .unwrap_or_default();
    let Some(audience) = scope.split_whitespace().find_map(audience) else {
        let resource = scope.trim_end_matches("/.default");
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {tenant_name}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        );
    };
    let Some(principal) = service_principal(&world, tenant_id, client_id) else {
        return app_not_found(client_id, &tenant_name);
    };
    let own_secret = match &principal.kind {
        PrincipalKind::ServicePrincipal { secret, .. } => secret.as_ref(),
        _ => None,
    };
    if let Some(e) = secret_error(&world, client_id, own_secret, params.get("client_secret")) {
        return e;
    }
    let lifetime = st.token_lifetime_secs();
    let now = Utc::now().timestamp();
    let claims = Claims {
        aud: audience.to_string(),
        iss: format!("https://sts.windows.net/{tenant_id}/"),
        iat: now,
        nbf: now,
        exp: now + lifetime as i64,
        tid: tenant_id.to_string(),
        oid: principal.object_id.clone(),
        sub: principal.object_id.clone(),
        appid: Some(client_id.clone()),
        appidacr: Some("1".into()),
        idtyp: Some("app".into()),
        upn: None,
        name: None,
        scp: None,
        ver: "1.0".into(),
        uti: st.random_id(),
    };
    let oid = principal.object_id.clone();
    drop(world);
    let mut response = json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": st.signer.sign(&claims),
        }),
    );
    response.extensions_mut().insert(Caller(oid));
    response
}

fn pkce_matches(method: &str, challenge: &str, verifier: &str) -> bool {
    if method.eq_ignore_ascii_case("plain") {
        return challenge == verifier;
    }
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

fn invalid_grant(code: u32, message: &str) -> Response<Body> {
    entra_error(StatusCode::BAD_REQUEST, "invalid_grant", code, message)
}

fn authorization_code(
    st: &SimState,
    tenant_id: &str,
    params: &HashMap<String, String>,
    base: &str,
) -> Response<Body> {
    for p in ["client_id", "code", "redirect_uri"] {
        if !params.contains_key(p) {
            return missing(p);
        }
    }
    let (client_id, code, redirect_uri) = (
        &params["client_id"],
        &params["code"],
        &params["redirect_uri"],
    );
    let issued = {
        let codes = st.codes();
        match codes.get(code) {
            None => {
                return invalid_grant(
                    70000,
                    "The provided value for the 'code' parameter is not valid.",
                );
            }
            Some(c) if c.redeemed => {
                return invalid_grant(
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                );
            }
            Some(c) if c.issued.elapsed() > CODE_LIFETIME => {
                return invalid_grant(
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                );
            }
            Some(c) => c.clone(),
        }
    };
    if !tenant_id.is_empty() && !issued.tenant_id.eq_ignore_ascii_case(tenant_id) {
        return invalid_grant(
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        );
    }
    if !issued.client_id.eq_ignore_ascii_case(client_id) {
        return invalid_grant(
            70000,
            "The provided value for the 'code' parameter is not valid. The code was issued to a different client.",
        );
    }
    if &issued.redirect_uri != redirect_uri {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI the authorization code was issued for."
            ),
        );
    }
    if let Some(challenge) = &issued.code_challenge {
        let ok = params
            .get("code_verifier")
            .is_some_and(|v| pkce_matches(&issued.code_challenge_method, challenge, v));
        if !ok {
            return invalid_grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            );
        }
    }
    let world = st.world();
    if client_id.eq_ignore_ascii_case(&world.app.client_id) {
        if let Some(e) = secret_error(&world, client_id, None, params.get("client_secret")) {
            return e;
        }
    }
    let Some(user) = world.principal(&issued.user_object_id).cloned() else {
        return invalid_grant(70000, "The user of this code no longer exists.");
    };
    drop(world);
    if let Some(c) = st.codes().get_mut(code) {
        c.redeemed = true;
    }
    let upn = match &user.kind {
        PrincipalKind::User { upn, .. } => upn.clone(),
        _ => String::new(),
    };
    let audience = issued
        .scope
        .split_whitespace()
        .find_map(arm_audience)
        .unwrap_or("https://management.azure.com");
    let lifetime = st.token_lifetime_secs();
    let now = Utc::now().timestamp();
    let tid = issued.tenant_id.clone();
    let claims = Claims {
        aud: audience.to_string(),
        iss: format!("https://sts.windows.net/{tid}/"),
        iat: now,
        nbf: now,
        exp: now + lifetime as i64,
        tid: tid.clone(),
        oid: user.object_id.clone(),
        sub: user.object_id.clone(),
        appid: Some(client_id.clone()),
        appidacr: Some("1".into()),
        idtyp: Some("user".into()),
        upn: Some(upn.clone()),
        name: Some(user.display_name.clone()),
        scp: Some("user_impersonation".into()),
        ver: "1.0".into(),
        uti: st.random_id(),
    };
    let mut body = json!({
        "token_type": "Bearer",
        "scope": format!("{audience}/user_impersonation").replace("windows.net//", "windows.net/"),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": st.signer.sign(&claims),
    });
    if issued.scope.split_whitespace().any(|s| s == "openid") {
        // The issuer the discovery document announces, as OIDC requires.
        let base_iss = format!("{base}/{tid}/v2.0");
        let id = IdClaims {
            aud: client_id.clone(),
            iss: base_iss,
            iat: now,
            nbf: now,
            exp: now + 3600,
            tid,
            oid: user.object_id.clone(),
            sub: user.object_id.clone(),
            preferred_username: upn,
            name: user.display_name.clone(),
            ver: "2.0",
            nonce: issued.nonce.clone(),
        };
        body["id_token"] = json!(st.signer.sign(&id));
    }
    let mut response = json(StatusCode::OK, &body);
    response.extensions_mut().insert(Caller(user.object_id));
    response
}

/// Parameters of `/authorize` and `/adminconsent`, from the query string or
/// the sign-in form.
fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    raw.map(|q| form(q.as_bytes())).unwrap_or_default()
}

fn redirect(to: &str, params: &[(&str, &str)]) -> Response<Body> {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let sep = if to.contains('?') { '&' } else { '?' };
    let location = format!("{to}{sep}{}", ser.finish());
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn error_page(status: StatusCode, code: u32, message: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><title>Sign in to your account</title></head><body>\
         <h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\">AADSTS{code}: {}</p></body></html>",
        escape(message)
    );
    html_response(status, html)
}

fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn sign_in_page(
    action: &str,
    params: &HashMap<String, String>,
    error: Option<&str>,
) -> Response<Body> {
    let mut fields: Vec<(&String, &String)> = params.iter().collect();
    fields.sort();
    let hidden: String = fields
        .into_iter()
        .filter(|(k, _)| k.as_str() != "login" && k.as_str() != "passwd")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let hint = params
        .get("login_hint")
        .map(|h| escape(h))
        .unwrap_or_default();
    let error = error
        .map(|e| format!("<p id=\"error\" style=\"color:#a4262c\">{}</p>", escape(e)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html><head><title>Sign in to your account</title>\
         <style>body{{font-family:Segoe UI,sans-serif;background:#f2f2f2}}form{{background:#fff;width:360px;margin:80px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}}input[type=text],input[type=password]{{width:100%;margin:8px 0;padding:6px}}</style></head>\
         <body><form method=\"post\" action=\"{action}\"><h2>Sign in</h2><p>Azure simulator (cloudkeep)</p>{error}{hidden}\
         <input type=\"text\" name=\"login\" placeholder=\"Email or phone\" value=\"{hint}\">\
         <input type=\"password\" name=\"passwd\" placeholder=\"Password\">\
         <button type=\"submit\">Sign in</button></form></body></html>"
    );
    html_response(StatusCode::OK, html)
}

/// Finds a user by UPN within the tenant named in the path (or any tenant
/// for `common` and `organizations`).
fn find_user(world: &World, tenant: &str, login: &str) -> Option<Principal> {
    let tenant_id = world.tenant(tenant).map(|t| t.id.clone());
    world
        .principals
        .iter()
        .find(|p| {
            matches!(&p.kind, PrincipalKind::User { upn, .. } if upn.eq_ignore_ascii_case(login))
                && tenant_id
                    .as_ref()
                    .is_none_or(|t| t.eq_ignore_ascii_case(&p.tenant_id))
        })
        .cloned()
}

enum Flow {
    Authorize,
    AdminConsent,
}

pub async fn authorize_get(
    State(st): St,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
    uri: Uri,
) -> Response<Body> {
    sign_in(
        &st,
        &tenant,
        query_map(q.as_deref()),
        uri.path(),
        Flow::Authorize,
        false,
    )
}

pub async fn authorize_post(
    State(st): St,
    Path(tenant): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response<Body> {
    sign_in(&st, &tenant, form(&body), uri.path(), Flow::Authorize, true)
}

pub async fn admin_consent_get(
    State(st): St,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
    uri: Uri,
) -> Response<Body> {
    sign_in(
        &st,
        &tenant,
        query_map(q.as_deref()),
        uri.path(),
        Flow::AdminConsent,
        false,
    )
}

pub async fn admin_consent_post(
    State(st): St,
    Path(tenant): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response<Body> {
    sign_in(
        &st,
        &tenant,
        form(&body),
        uri.path(),
        Flow::AdminConsent,
        true,
    )
}

/// Who may consent for a tenant: members (not guests) holding Owner or
/// User Access Administrator somewhere.
fn may_consent(st: &SimState, user: &Principal) -> bool {
    let world = st.world();
    let guest = matches!(user.kind, PrincipalKind::User { guest: true, .. });
    !guest
        && world.role_assignments.iter().any(|a| {
            a.principal_id.eq_ignore_ascii_case(&user.object_id)
                && (a.role_definition_id == crate::roles::OWNER
                    || a.role_definition_id == crate::roles::USER_ACCESS_ADMINISTRATOR)
        })
}

fn sign_in(
    st: &SimState,
    tenant: &str,
    params: HashMap<String, String>,
    action: &str,
    flow: Flow,
    submitted: bool,
) -> Response<Body> {
    if !is_tenant_alias(tenant) && st.world().tenant(tenant).is_none() {
        return error_page(
            StatusCode::BAD_REQUEST,
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let Some(client_id) = params.get("client_id").cloned() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(redirect_uri) = params.get("redirect_uri").cloned() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    };
    if !(redirect_uri.starts_with("https://")
        || redirect_uri.starts_with("http://localhost")
        || redirect_uri.starts_with("http://127.0.0.1"))
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        );
    }
    let state_param = params.get("state").cloned().unwrap_or_default();
    {
        let world = st.world();
        if !client_id.eq_ignore_ascii_case(&world.app.client_id) {
            return error_page(
                StatusCode::BAD_REQUEST,
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory."
                ),
            );
        }
    }
    if let Flow::Authorize = flow {
        if params.get("response_type").map(String::as_str) != Some("code") {
            return redirect(
                &redirect_uri,
                &[
                    ("error", "unsupported_response_type"),
                    (
                        "error_description",
                        "AADSTS700054: response_type 'id_token' is not enabled for the application.",
                    ),
                    ("state", &state_param),
                ],
            );
        }
        if let Some(m) = params.get("code_challenge_method") {
            if !m.eq_ignore_ascii_case("S256") && !m.eq_ignore_ascii_case("plain") {
                return redirect(
                    &redirect_uri,
                    &[
                        ("error", "invalid_request"),
                        (
                            "error_description",
                            "AADSTS501491: Invalid size of Code_Challenge parameter or invalid code_challenge_method.",
                        ),
                        ("state", &state_param),
                    ],
                );
            }
        }
    }

    // Who is signing in: the form's credentials, or a login hint with prompt=none.
    let user = if submitted {
        let login = params.get("login").cloned().unwrap_or_default();
        let password = params.get("passwd").cloned().unwrap_or_default();
        let world = st.world();
        match find_user(&world, tenant, &login) {
            Some(u) if matches!(&u.kind, PrincipalKind::User { password: p, .. } if *p == password) => {
                u
            }
            _ => {
                drop(world);
                return sign_in_page(
                    action,
                    &params,
                    Some(
                        "AADSTS50126: Error validating credentials due to invalid username or password.",
                    ),
                );
            }
        }
    } else if params.get("prompt").map(String::as_str) == Some("none") {
        let hint = params.get("login_hint").cloned().unwrap_or_default();
        match find_user(&st.world(), tenant, &hint) {
            Some(u) => u,
            None => {
                return redirect(
                    &redirect_uri,
                    &[
                        ("error", "login_required"),
                        (
                            "error_description",
                            "AADSTS50058: A silent sign-in request was sent but no user is signed in.",
                        ),
                        ("state", &state_param),
                    ],
                );
            }
        }
    } else {
        return sign_in_page(action, &params, None);
    };

    match flow {
        Flow::AdminConsent => {
            let may_consent = may_consent(st, &user);
            if !may_consent {
                return redirect(
                    &redirect_uri,
                    &[
                        ("error", "permission_denied"),
                        (
                            "error_description",
                            "AADSTS90094: An administrator of Contoso has set a policy that prevents you from granting the permissions requested by this app.",
                        ),
                        ("state", &state_param),
                    ],
                );
            }
            st.world_mut().consent_app(&user.tenant_id);
            redirect(
                &redirect_uri,
                &[
                    ("tenant", &user.tenant_id),
                    ("state", &state_param),
                    ("admin_consent", "True"),
                ],
            )
        }
        Flow::Authorize => {
            // The application needs consent in the user's tenant. In an
            // interactive sign-in (anything but `prompt=none`) Entra asks an
            // Owner or User Access Administrator for it, who gives it for the
            // organisation; otherwise sign-in fails as Entra's does (AADSTS65001).
            let consented = st
                .world()
                .app_consented_in
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&user.tenant_id));
            if !consented {
                if params.get("prompt").map(String::as_str) != Some("none")
                    && may_consent(st, &user)
                {
                    st.world_mut().consent_app(&user.tenant_id);
                } else {
                    return redirect(
                        &redirect_uri,
                        &[
                            ("error", "consent_required"),
                            (
                                "error_description",
                                "AADSTS65001: The user or administrator has not consented to use the application. Send an interactive authorization request for this user and resource.",
                            ),
                            ("state", &state_param),
                        ],
                    );
                }
            }
            let code = format!(
                "1.{}{}",
                URL_SAFE_NO_PAD.encode(st.random_id()),
                URL_SAFE_NO_PAD.encode(st.random_id())
            );
            st.codes().insert(
                code.clone(),
                AuthCode {
                    tenant_id: user.tenant_id.clone(),
                    client_id,
                    redirect_uri: redirect_uri.clone(),
                    code_challenge: params.get("code_challenge").cloned(),
                    code_challenge_method: params
                        .get("code_challenge_method")
                        .cloned()
                        .unwrap_or_else(|| "plain".into()),
                    user_object_id: user.object_id.clone(),
                    scope: params.get("scope").cloned().unwrap_or_default(),
                    nonce: params.get("nonce").cloned(),
                    issued: Instant::now(),
                    redeemed: false,
                },
            );
            let session = st.random_id();
            let mut response = redirect(
                &redirect_uri,
                &[
                    ("code", &code),
                    ("state", &state_param),
                    ("session_state", &session),
                ],
            );
            response.extensions_mut().insert(Caller(user.object_id));
            response
        }
    }
}

pub fn routes() -> axum::Router<Arc<SimState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/common/discovery/instance", get(discovery_instance))
        .route("/metadata/endpoints", get(metadata_endpoints))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize_get).post(authorize_post),
        )
        .route(
            "/{tenant}/adminconsent",
            get(admin_consent_get).post(admin_consent_post),
        )
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(admin_consent_get).post(admin_consent_post),
        )
}
