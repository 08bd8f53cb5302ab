//! Entra ID: discovery, client credentials, the code flow with PKCE, admin
//! consent for the multi-tenant application, and AADSTS errors.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{self, REDIRECT, claims, pkce, start};

#[tokio::test]
async fn discovery_documents_point_at_the_simulator() {
    let sim = start().await;
    let tid = sim.tenant_id();
    let doc = sim
        .control_get(&format!("/{tid}/v2.0/.well-known/openid-configuration"))
        .await;
    assert_eq!(doc["issuer"], format!("{}/{tid}/v2.0", sim.url()));
    assert_eq!(
        doc["token_endpoint"],
        format!("{}/{tid}/oauth2/v2.0/token", sim.url())
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/{tid}/oauth2/v2.0/authorize", sim.url())
    );
    let keys = sim
        .control_get(&format!("/{tid}/discovery/v2.0/keys"))
        .await;
    assert_eq!(keys["keys"][0]["kty"], "EC");
    let instance = sim.control_get("/common/discovery/instance").await;
    assert!(
        instance["tenant_discovery_endpoint"]
            .as_str()
            .unwrap_or("")
            .starts_with(sim.url())
    );
    let meta = sim
        .control_get("/metadata/endpoints?api-version=2022-09-01")
        .await;
    assert_eq!(meta[0]["name"], "AzureCloud");
    assert_eq!(meta[0]["resourceManager"], format!("{}/", sim.url()));
    assert_eq!(
        meta[0]["authentication"]["loginEndpoint"],
        format!("{}/", sim.url())
    );
    let r = sim
        .http
        .get(format!(
            "{}/no-such-tenant/v2.0/.well-known/openid-configuration",
            sim.url()
        ))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn client_credentials_issue_an_arm_token() {
    let sim = start().await;
    let p = sim.sp("collector");
    let token = sim.token_for(&p).await;
    let c = claims(&token);
    assert_eq!(c["tid"], sim.tenant_id());
    assert_eq!(c["oid"], p.object_id);
    assert_eq!(c["appid"], p.client_id);
    assert_eq!(c["aud"], "https://management.azure.com");
    assert!(c["exp"].as_i64().expect("exp") > c["iat"].as_i64().expect("iat"));

    // The secret may also come by HTTP Basic, and the legacy ARM scope works.
    let r = sim
        .http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.url(),
            sim.tenant_id()
        ))
        .basic_auth(&p.client_id, Some(&p.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://management.core.windows.net//.default"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::OK);
}

/// A client-credentials request and the Entra error it must get.
struct Attempt<'a> {
    tenant: &'a str,
    client_id: &'a str,
    secret: &'a str,
    scope: &'a str,
}

async fn assert_aadsts(sim: &harness::Sim, a: Attempt<'_>, expected: (StatusCode, &str, u64)) {
    let (status, error, code) = expected;
    let (s, body) = sim
        .token_request(
            a.tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", a.client_id),
                ("client_secret", a.secret),
                ("scope", a.scope),
            ],
        )
        .await;
    assert_eq!(s, status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.starts_with(&format!("AADSTS{code}:")),
        "{description}"
    );
    assert!(
        body["trace_id"].is_string()
            && body["correlation_id"].is_string()
            && body["timestamp"].is_string()
    );
}

#[tokio::test]
async fn credential_errors_carry_the_right_aadsts_codes() {
    let sim = start().await;
    let tid = sim.tenant_id();
    let p = sim.sp("collector");
    let arm = "https://management.azure.com/.default";
    assert_aadsts(
        &sim,
        Attempt {
            tenant: &tid,
            client_id: &p.client_id,
            secret: "wrong",
            scope: arm,
        },
        (StatusCode::UNAUTHORIZED, "invalid_client", 7000215),
    )
    .await;
    assert_aadsts(
        &sim,
        Attempt {
            tenant: &tid,
            client_id: "00000000-0000-0000-0000-000000000001",
            secret: "x",
            scope: arm,
        },
        (StatusCode::BAD_REQUEST, "unauthorized_client", 700016),
    )
    .await;
    assert_aadsts(
        &sim,
        Attempt {
            tenant: "11111111-2222-3333-4444-555555555555",
            client_id: &p.client_id,
            secret: &p.client_secret,
            scope: arm,
        },
        (StatusCode::BAD_REQUEST, "invalid_request", 90002),
    )
    .await;
    assert_aadsts(
        &sim,
        Attempt {
            tenant: &tid,
            client_id: &p.client_id,
            secret: &p.client_secret,
            scope: "https://api.unknown.example/.default",
        },
        (StatusCode::BAD_REQUEST, "invalid_resource", 500011),
    )
    .await;
    let (status, _) = sim
        .control(
            Method::POST,
            "/_sim/secrets/expire",
            json!({"client_id": p.client_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_aadsts(
        &sim,
        Attempt {
            tenant: &tid,
            client_id: &p.client_id,
            secret: &p.client_secret,
            scope: arm,
        },
        (StatusCode::UNAUTHORIZED, "invalid_client", 7000222),
    )
    .await;
    let (status, body) = sim
        .token_request(&tid, &[("client_id", &p.client_id)])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_codes"], json!([900144]));
}

#[tokio::test]
async fn authorization_code_with_pkce_is_single_use() {
    let sim = start().await;
    let user = sim.user("partial-owner");
    let upn = user["upn"].as_str().expect("upn");
    let (verifier, challenge) = pkce();
    let params = sim.authorize(upn, &challenge, "state-123").await;
    let error =
        |p: &[(String, String)]| p.iter().find(|(k, _)| k == "error").map(|(_, v)| v.clone());
    assert_eq!(
        error(&params).as_deref(),
        Some("consent_required"),
        "no sign-in before the tenant consents"
    );
    sim.consent().await;
    let params = sim.authorize(upn, &challenge, "state-123").await;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("state").as_deref(), Some("state-123"));
    let code = get("code").expect("code");
    let (client_id, secret) = sim.app();
    let redeem = |verifier: String| {
        let (client_id, secret, code) = (client_id.clone(), secret.clone(), code.clone());
        let sim = &sim;
        async move {
            sim.token_request(
                "organizations",
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", &client_id),
                    ("client_secret", &secret),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };
    let (status, body) = redeem("not-the-verifier-0123456789012345678901234567890".into()).await;
    assert_eq!(
        (status, body["error_codes"].clone()),
        (StatusCode::BAD_REQUEST, json!([501481])),
        "{body}"
    );
    let (status, body) = redeem(verifier.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = claims(body["access_token"].as_str().expect("token"));
    assert_eq!(c["upn"], upn);
    assert_eq!(c["oid"], user["object_id"]);
    assert_eq!(c["scp"], "user_impersonation");
    assert!(body["id_token"].is_string());
    let (status, body) = redeem(verifier).await;
    assert_eq!(
        (status, body["error_codes"].clone()),
        (StatusCode::BAD_REQUEST, json!([54005])),
        "{body}"
    );
    let (status, body) = sim
        .token_request(
            "organizations",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", "bogus"),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error_codes"].clone()),
        (StatusCode::BAD_REQUEST, json!([70000])),
        "{body}"
    );
}

#[tokio::test]
async fn sign_in_page_checks_the_password() {
    let sim = start().await;
    let user = sim.user("partial-owner");
    let (client_id, _) = sim.app();
    let tid = sim.tenant_id();
    let page = sim
        .http
        .get(format!("{}/{tid}/oauth2/v2.0/authorize", sim.url()))
        .query(&[
            ("client_id", client_id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "https://management.azure.com/user_impersonation"),
            ("state", "s"),
        ])
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("<form"));
    let post = |password: String| {
        let sim = &sim;
        let (client_id, tid, upn) = (
            client_id.clone(),
            tid.clone(),
            user["upn"].as_str().unwrap_or("").to_string(),
        );
        async move {
            sim.http
                .post(format!("{}/{tid}/oauth2/v2.0/authorize", sim.url()))
                .form(&[
                    ("client_id", client_id.as_str()),
                    ("response_type", "code"),
                    ("redirect_uri", REDIRECT),
                    ("state", "s"),
                    ("prompt", "consent"),
                    ("login", upn.as_str()),
                    ("passwd", password.as_str()),
                ])
                .send()
                .await
                .expect("post")
        }
    };
    let wrong = post("nope".into()).await;
    assert_eq!(wrong.status(), StatusCode::OK);
    assert!(wrong.text().await.expect("html").contains("AADSTS50126"));
    let right = post(user["password"].as_str().expect("password").to_string()).await;
    assert_eq!(right.status(), StatusCode::FOUND);
    assert!(
        right.headers()["location"]
            .to_str()
            .expect("location")
            .contains("code=")
    );
}

#[tokio::test]
async fn multi_tenant_app_works_only_after_consent() {
    let sim = start().await;
    let tid = sim.tenant_id();
    let (client_id, secret) = sim.app();
    let arm = "https://management.azure.com/.default";
    assert_aadsts(
        &sim,
        Attempt {
            tenant: &tid,
            client_id: &client_id,
            secret: &secret,
            scope: arm,
        },
        (StatusCode::BAD_REQUEST, "unauthorized_client", 700016),
    )
    .await;

    let consent = |upn: String| {
        let sim = &sim;
        let (client_id, tid) = (client_id.clone(), tid.clone());
        async move {
            let r = sim
                .http
                .get(format!("{}/{tid}/adminconsent", sim.url()))
                .query(&[
                    ("client_id", client_id.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("state", "c1"),
                    ("login_hint", upn.as_str()),
                    ("prompt", "none"),
                ])
                .send()
                .await
                .expect("consent");
            assert_eq!(r.status(), StatusCode::FOUND);
            r.headers()["location"]
                .to_str()
                .expect("location")
                .to_string()
        }
    };
    let guest = consent(sim.user("guest")["upn"].as_str().expect("upn").into()).await;
    assert!(guest.contains("error=permission_denied"), "{guest}");
    let owner = consent(
        sim.user("partial-owner")["upn"]
            .as_str()
            .expect("upn")
            .into(),
    )
    .await;
    assert!(
        owner.contains("admin_consent=True") && owner.contains(&format!("tenant={tid}")),
        "{owner}"
    );

    let (status, body) = sim
        .token_request(
            &tid,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
                ("scope", arm),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let scenario = sim.control_get("/_sim/scenario").await;
    let app_sp = scenario["tenants"][0]["service_principals"]
        .as_array()
        .expect("sps")
        .iter()
        .find(|p| p["key"] == "cloudkeep")
        .cloned()
        .expect("app sp");
    assert_eq!(
        claims(body["access_token"].as_str().expect("token"))["oid"],
        app_sp["object_id"]
    );
    assert_eq!(scenario["tenants"][0]["app_consented"], true);
}
