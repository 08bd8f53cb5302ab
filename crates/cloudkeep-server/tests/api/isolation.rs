//! Tenant isolation: every route of the OpenAPI document, called with one
//! organisation's token and another organisation's ids, answers 404 (or
//! 403 for a role failure) and never the other organisation's data. The
//! routes come from the document, so a new route cannot skip this test.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::spawn_app;

/// A plausible body for a route, so that validation does not stop the call early.
fn body_for(path: &str, method: &Method) -> Option<Value> {
    if *method == Method::GET || *method == Method::DELETE {
        return None;
    }
    Some(match path {
        p if p.ends_with("/reauth") => json!({"client_secret": "x"}),
        p if p.ends_with("/resolve") => json!({"resolution": "take_theirs"}),
        p if p.starts_with("/api/v1/connections/consent/") => json!({"subscriptions": []}),
        p if p.starts_with("/api/v1/connections/") && p.ends_with("/spend") => {
            json!({"trailing_days": 3})
        }
        "/api/v1/spend/tag-aliases" => json!({"aliases": {"environment": "env"}}),
        "/api/v1/spend/tag-aliases/{alias}" => json!({"key": "env"}),
        "/api/v1/settings/required-tags" => json!({"keys": ["owner"]}),
        "/api/v1/coverage/fix" => json!({"keys": ["owner"], "top": 10, "use_suggested": true}),
        p if p.starts_with("/api/v1/connections/") => {
            json!({"name": "taken over", "cadence_hours": 1})
        }
        p if p.starts_with("/api/v1/subscriptions/") => json!({"sync_level": "no_tags"}),
        p if p.ends_with("/data-access") => json!({"granted": true}),
        p if p.starts_with("/api/v1/users/") => json!({"role": "viewer"}),
        "/api/v1/users" => {
            json!({"email": format!("iso-{}@example.com", uuid::Uuid::new_v4().simple()), "name": "I", "role": "viewer"})
        }
        "/api/v1/tokens" => json!({"name": "iso"}),
        p if p.starts_with("/api/v1/budgets") => {
            json!({"name": "taken over", "amount": 5.0, "actual_thresholds": [50]})
        }
        "/api/v1/webhooks" => json!({"name": "iso", "url": "https://hooks.example.com/iso"}),
        p if p.starts_with("/api/v1/webhooks/") => json!({"name": "taken over"}),
        "/api/v1/control-mapping" => json!({"control": "CC6.1", "remove": ["rbac.guest_users"]}),
        "/api/v1/settings/evidence" => json!({"secure_score_threshold": 0.5}),
        "/api/v1/settings/retention" => json!({"days": 90}),
        "/api/v1/assessments" => json!({"name": "iso", "period_start": "2026-01-01T00:00:00Z",
            "period_end": "2026-02-01T00:00:00Z", "controls": ["CC6.1"]}),
        p if p.ends_with("/evidence") && p.starts_with("/api/v1/assessments/") => {
            json!({"all_in_scope": true})
        }
        p if p.ends_with("/samples") => json!({"control": "CC6.1", "size": 1}),
        p if p.ends_with("/invitations") => json!({"email": "iso@example.com"}),
        "/api/v1/tag-edits" | "/api/v1/tag-edits/preview" => {
            json!({"resource_id": uuid::Uuid::nil(), "set": {"x": "y"}})
        }
        "/api/v1/auth/login" => {
            json!({"email": "nobody@example.com", "password": "wrong password"})
        }
        _ => json!({}),
    })
}

#[tokio::test]
async fn no_route_reaches_another_organisations_data() {
    let app = spawn_app().await;
    let a = app.org("alpha").await;
    let b = app.org("beta").await;
    let conn = app.connect(&a, "collector").await;
    let (status, run) = app
        .call(
            &a.token,
            Method::POST,
            &format!(
                "/api/v1/connections/{}/sync",
                conn["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let run_id = run["id"].as_str().expect("run").to_string();
    let (_, resources) = app
        .call(&a.token, Method::GET, "/api/v1/resources?limit=1", None)
        .await;
    let resource_id = resources["items"][0]["id"]
        .as_str()
        .expect("resource")
        .to_string();
    let (_, me) = app.call(&a.token, Method::GET, "/api/v1/me", None).await;
    let (_, tokens) = app
        .call(&a.token, Method::GET, "/api/v1/tokens", None)
        .await;
    // The ids of A's records, by the parameter kind of the route.
    let connection_id = conn["id"].as_str().expect("id").to_string();
    let subscription_id = conn["subscriptions"][0]["id"]
        .as_str()
        .expect("sub")
        .to_string();
    let user_id = me["user"]["id"].as_str().expect("user").to_string();
    let token_id = tokens["items"][0]["id"]
        .as_str()
        .expect("token")
        .to_string();
    let (status, edits) = app
        .call(
            &a.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(json!({"resource_id": resource_id, "set": {"isolation": "a"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{edits}");
    let edit_id = edits["edits"][0]["id"].as_str().expect("edit").to_string();
    let (_, evidence) = app
        .call(&a.token, Method::GET, "/api/v1/evidence?limit=1", None)
        .await;
    let evidence_id = evidence["items"][0]["id"]
        .as_str()
        .expect("evidence")
        .to_string();
    let (status, alias) = app
        .call(
            &a.token,
            Method::PUT,
            "/api/v1/spend/tag-aliases/alpha-alias",
            Some(json!({"key": "alpha-key"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{alias}");
    let hook_url = "http://127.0.0.1:9/alpha-receiver";
    let (status, hook) = app
        .call(
            &a.token,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"name": "alpha", "url": hook_url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let webhook_id = hook["webhook"]["id"].as_str().expect("hook").to_string();
    let alert = app
        .store
        .open_alert(
            &a.scope,
            cloudkeep_store::NewAlert {
                kind: cloudkeep_domain::evidence::AlertKind::EvidenceStale,
                scope: format!("connection:{connection_id}"),
                title: "alpha's alert".into(),
                figures: json!({}),
            },
            "system:test",
        )
        .await
        .expect("alert")
        .expect("opened");
    let alert_id = alert.id.to_string();
    let assessment = app
        .expect(
            &a.token,
            Method::POST,
            "/api/v1/assessments",
            Some(
                json!({"name": "alpha's audit", "period_start": "2020-01-01T00:00:00Z",
                "period_end": "2100-01-01T00:00:00Z", "controls": ["CC6.1", "CC6.6", "CC7.1"]}),
            ),
            StatusCode::CREATED,
        )
        .await;
    let assessment_id = assessment["id"].as_str().expect("assessment").to_string();
    app.expect(
        &a.token,
        Method::POST,
        &format!("/api/v1/assessments/{assessment_id}/evidence"),
        Some(json!({"all_in_scope": true})),
        StatusCode::OK,
    )
    .await;
    let invited = app
        .expect(
            &a.token,
            Method::POST,
            &format!("/api/v1/assessments/{assessment_id}/invitations"),
            Some(json!({"email": "alpha-auditor@example.com"})),
            StatusCode::CREATED,
        )
        .await;
    let invitation_id = invited["invitation"]["id"]
        .as_str()
        .expect("invitation")
        .to_string();
    let budget = app
        .expect(
            &a.token,
            Method::POST,
            "/api/v1/budgets",
            Some(json!({"name": "alpha's budget", "amount": 1.0, "actual_thresholds": [80]})),
            StatusCode::CREATED,
        )
        .await;
    let budget_id = budget["id"].as_str().expect("budget").to_string();
    // A's spend is keyed by its Azure subscription id.
    let azure_subscription = conn["subscriptions"][0]["subscription_id"]
        .as_str()
        .expect("azure id")
        .to_string();
    // A's spend incidents: the demo's own spike is one.
    let (_, incidents) = app
        .call(
            &a.token,
            Method::GET,
            "/api/v1/spend/anomalies?limit=1",
            None,
        )
        .await;
    let incident_id = incidents["items"][0]["id"]
        .as_str()
        .expect("an incident of A's (the demo's spike)")
        .to_string();
    let a_markers = [
        azure_subscription,
        "alpha-key".to_string(),
        incident_id.clone(),
        connection_id.clone(),
        subscription_id.clone(),
        user_id.clone(),
        token_id.clone(),
        run_id.clone(),
        resource_id.clone(),
        edit_id.clone(),
        a.owner_email.clone(),
        a.org_id.clone(),
        evidence_id.clone(),
        webhook_id.clone(),
        alert_id.clone(),
        hook_url.to_string(),
        assessment_id.clone(),
        invitation_id.clone(),
        "alpha-auditor@example.com".to_string(),
        budget_id.clone(),
        "alpha's budget".to_string(),
    ];

    let doc: Value = app
        .http
        .get(format!("{}/api/v1/openapi.json", app.url))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 10, "the document lists the routes");
    let mut checked = 0;
    for (template, ops) in paths {
        for (verb, _) in ops.as_object().expect("ops") {
            let method: Method = verb.to_uppercase().parse().expect("method");
            let path = template
                .replace(
                    "/connections/{id}",
                    &format!("/connections/{connection_id}"),
                )
                .replace(
                    "/subscriptions/{id}",
                    &format!("/subscriptions/{subscription_id}"),
                )
                .replace("/users/{id}", &format!("/users/{user_id}"))
                .replace("/tokens/{id}", &format!("/tokens/{token_id}"))
                .replace("/sync-runs/{id}", &format!("/sync-runs/{run_id}"))
                .replace("/resources/{id}", &format!("/resources/{resource_id}"))
                .replace("/tag-edits/{id}", &format!("/tag-edits/{edit_id}"))
                .replace("/evidence/{id}", &format!("/evidence/{evidence_id}"))
                .replace(
                    "/assessments/{id}",
                    &format!("/assessments/{assessment_id}"),
                )
                .replace("{evidence_id}", &evidence_id)
                .replace("{invitation_id}", &invitation_id)
                .replace("/alerts/{id}", &format!("/alerts/{alert_id}"))
                .replace("/anomalies/{id}", &format!("/anomalies/{incident_id}"))
                .replace("/webhooks/{id}", &format!("/webhooks/{webhook_id}"))
                .replace("/budgets/{id}", &format!("/budgets/{budget_id}"))
                // Aliases are named, per organisation: B's own of the same
                // name is B's (checked below: A's stays as it was).
                .replace("/tag-aliases/{alias}", "/tag-aliases/alpha-alias")
                // Controls are SOC 2's, not an organisation's: B reads its own.
                .replace("/controls/{id}", "/controls/CC6.1")
                // Consent flows are bound to a browser session; the consent
                // tests check that another session cannot reach one.
                .replace("/consent/{flow}", "/consent/cs_not_this_session");
            assert!(
                !path.contains('{'),
                "{template}: a path parameter this test does not know; teach it"
            );
            // Lists are also asked for A's records by filter.
            let mut calls = vec![path.clone()];
            if method == Method::GET && !template.contains('{') {
                calls.push(format!(
                    "{path}?connection={connection_id}&subscription={subscription_id}&resource={resource_id}"
                ));
            }
            let mut answers = Vec::new();
            for path in &calls {
                let (status, body) = app
                    .call(&b.token, method.clone(), path, body_for(template, &method))
                    .await;
                let text = body.to_string();
                for marker in &a_markers {
                    assert!(
                        !text.contains(marker.as_str()),
                        "{verb} {path} leaked {marker}: {text}"
                    );
                }
                answers.push((status, text));
            }
            let (status, text) = answers.remove(0);
            if template.contains('{')
                && !template.starts_with("/api/v1/controls/")
                && !template.starts_with("/api/v1/spend/tag-aliases/")
            {
                assert!(
                    matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                    "{verb} {path} answered {status}: {text}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "checked {checked} operations");
    // A's records are untouched.
    let (status, still) = app
        .call(
            &a.token,
            Method::GET,
            &format!("/api/v1/connections/{connection_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(still["deleted_at"].is_null());
    assert_eq!(
        still["subscriptions"][0]["sync_level"],
        conn["subscriptions"][0]["sync_level"]
    );
    let (_, aliases) = app
        .call(&a.token, Method::GET, "/api/v1/spend/tag-aliases", None)
        .await;
    assert_eq!(aliases["aliases"]["alpha-alias"], "alpha-key", "{aliases}");
}
