//! The HTTPS server: TLS, HTTP/1.1 and HTTP/2, path normalisation, fault
//! injection and the request log, around the axum router.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::faults::Fault;
use crate::state::SimState;

/// Set by handlers on their response: who called (an object id), for the log.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// Returned to hyper to close the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub async fn serve(
    state: Arc<SimState>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = crate::routes(state.clone());
    let acceptor = TlsAcceptor::from(tls);
    let (closing, close_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let router = router.clone();
                let state = state.clone();
                let mut close_rx = close_rx.clone();
                connections.spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        handle(state.clone(), router.clone(), req.map(Body::new))
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = close_rx.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        }
        while connections.try_join_next().is_some() {}
    }
    let _ = closing.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// ARM tolerates doubled slashes in paths; so does the simulator.
fn normalise(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    if !path.contains("//") {
        return None;
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && collapsed.ends_with('/') {
            continue;
        }
        collapsed.push(c);
    }
    let pq = match uri.query() {
        Some(q) => format!("{collapsed}?{q}"),
        None => collapsed,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).ok()
}

pub fn decoded_query(uri: &Uri) -> String {
    let q = uri.query().unwrap_or("");
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| {
            if v.is_empty() && !q.contains(&format!("{k}=")) {
                k.into_owned()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_entra_path(path: &str) -> bool {
    path.contains("/oauth2/")
        || path.contains("/.well-known/")
        || path.contains("/discovery/")
        || path.starts_with("/metadata/")
        || path.contains("/adminconsent")
}

async fn handle(
    state: Arc<SimState>,
    router: Router,
    mut req: Request<Body>,
) -> Result<Response<Body>, DropConnection> {
    if let Some(uri) = normalise(req.uri()) {
        *req.uri_mut() = uri;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = decoded_query(req.uri());
    let simulated = !path.starts_with("/_sim");

    let mut fault = Fault::None;
    let mut retry_after = String::new();
    if simulated {
        let (picked, faults) = state.fault_for(&method, &path, &query, !is_entra_path(&path));
        if faults.slows(&path) {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        fault = picked;
        retry_after = faults.retry_after_header();
    }
    let log = |principal: Option<String>, status: u16| {
        if simulated {
            state.log().push(
                method.clone(),
                path.clone(),
                query.clone(),
                principal,
                status,
            );
        }
    };
    match fault {
        Fault::Drop => {
            log(None, 0);
            return Err(DropConnection);
        }
        Fault::Status500 | Fault::Status503 | Fault::Status429 => {
            let response = injected_error(fault, is_entra_path(&path), &retry_after);
            log(None, response.status().as_u16());
            return Ok(response);
        }
        Fault::None | Fault::Truncate => {}
    }

    let response = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let principal = response.extensions().get::<Caller>().map(|c| c.0.clone());
    log(principal, response.status().as_u16());
    if fault == Fault::Truncate {
        return Ok(truncate(response).await);
    }
    Ok(response)
}

fn injected_error(fault: Fault, entra: bool, retry_after: &str) -> Response<Body> {
    let (status, code, message) = match fault {
        Fault::Status503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable. Please try again later.",
        ),
        Fault::Status429 => (
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled",
            "Number of requests exceeded the limit. Please try again after the time in Retry-After, when additional tokens are available. Refer to https://aka.ms/arm-throttling",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Encountered internal server error. Diagnostic information: timestamp '', subscription id '', tracking id '', request correlation id ''.",
        ),
    };
    let body = if entra {
        let (err, aad) = match fault {
            Fault::Status429 => (
                "temporarily_unavailable",
                "AADSTS90055: The number of requests is too high. Retry after some time.",
            ),
            _ => (
                "temporarily_unavailable",
                "AADSTS90033: A transient error has occurred. Please try again.",
            ),
        };
        serde_json::json!({"error": err, "error_description": aad, "error_codes": [aad[6..11].parse::<u32>().unwrap_or(0)]})
    } else {
        serde_json::json!({"error": {"code": code, "message": message}})
    };
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if matches!(fault, Fault::Status429 | Fault::Status503) {
        if let Ok(v) = HeaderValue::from_str(retry_after) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// Sends the headers and half the body, then breaks the stream, so the
/// client sees fewer bytes than `Content-Length` promised.
async fn truncate(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(bytes.len().max(2)),
    );
    let half = bytes.slice(..bytes.len() / 2);
    let frames = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(Frame::data(half)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "truncated by fault injection",
        )),
    ]);
    Response::from_parts(parts, Body::new(http_body_util::StreamBody::new(frames)))
}

/// A JSON response with Azure's usual headers.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The host name a request was made to, without a port, lower-cased
/// (the simulator serves Key Vault and Graph by host name).
pub fn request_host(headers: &axum::http::HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.host().map(str::to_string))
        .unwrap_or_default();
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or("").to_string()
    };
    name.to_ascii_lowercase()
}

/// The origin a request was made to, for absolute links (`nextLink`,
/// endpoints in discovery documents).
pub fn base_url(headers: &axum::http::HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "management.azure.com".to_string());
    format!("https://{host}")
}
