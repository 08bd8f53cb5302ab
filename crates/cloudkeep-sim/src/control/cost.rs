//! Control calls for cost: known cost events (a spike on a resource, the
//! first charge of a new resource in a region or service), restated days,
//! and which family of Cost Management's throttling headers answers.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use axum::routing::{post, put};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;

use super::{NewResource, add_resource, bad_request, not_found, ok};
use crate::faults::CostHeaders;
use crate::server::json;
use crate::state::SimState;
use crate::world::cost::{CostEvent, EventKind, catalogue};
use crate::world::posture_guid;

type St = State<Arc<SimState>>;

pub fn routes() -> axum::Router<Arc<SimState>> {
    axum::Router::new()
        .route("/cost/events", post(add_event))
        .route("/cost/restate", post(restate))
        .route("/cost/headers", put(set_headers).get(get_headers))
}

/// `POST /_sim/cost/events`.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum NewEvent {
    /// The resource's cost is `factor` times as much from `from` to `to`.
    Spike {
        resource_id: String,
        from: NaiveDate,
        to: NaiveDate,
        factor: f64,
        #[serde(default)]
        note: String,
    },
    /// A new resource (`subscription_id`, `resource_group`, `type`, `name`,
    /// `location`) that costs `daily` a day from `from`: a first charge in
    /// a new region or service.
    NewCharge {
        #[serde(flatten)]
        resource: serde_json::Value,
        from: NaiveDate,
        daily: f64,
        #[serde(default)]
        note: String,
    },
}

async fn add_event(State(st): St, Json(event): Json<NewEvent>) -> Response<Body> {
    let mut world = st.world_mut();
    let seed = world.seed;
    let n = world.cost_events.len();
    let event = match event {
        NewEvent::Spike {
            resource_id,
            from,
            to,
            factor,
            note,
        } => {
            if from > to || !(factor > 0.0 && factor.is_finite()) {
                return bad_request("from must not be after to, and factor is a positive number");
            }
            let Some(r) = world
                .resources
                .iter()
                .find(|r| r.id.eq_ignore_ascii_case(&resource_id))
            else {
                return not_found(format!("no resource '{resource_id}'"));
            };
            CostEvent {
                id: posture_guid(seed, &format!("event:{n}:{resource_id}")),
                kind: EventKind::Spike,
                scope: r.id.clone(),
                from,
                to,
                factor,
                note,
                created: chrono::Utc::now(),
            }
        }
        NewEvent::NewCharge {
            resource,
            from,
            daily,
            note,
        } => {
            let new: NewResource = match serde_json::from_value(resource) {
                Ok(r) => r,
                Err(e) => return bad_request(format!("invalid new_charge: {e}")),
            };
            if catalogue::by_type(&new.resource_type).is_none_or(|s| s.meters.is_empty()) {
                return bad_request(format!(
                    "'{}' has no meters; use a type that costs (e.g. Microsoft.Cache/Redis)",
                    new.resource_type
                ));
            }
            if !(daily > 0.0 && daily.is_finite()) {
                return bad_request("daily is a positive number of USD");
            }
            let created = from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
            let id = match add_resource(&mut world, new, created, Some(daily)) {
                Ok(id) => id,
                Err(refused) => return *refused,
            };
            CostEvent {
                id: posture_guid(seed, &format!("event:{n}:{id}")),
                kind: EventKind::NewCharge,
                scope: id,
                from,
                to: world.today(),
                factor: 1.0,
                note,
                created: chrono::Utc::now(),
            }
        }
    };
    let body = event_json(&event);
    world.cost_events.push(event);
    world.generation += 1;
    json(StatusCode::CREATED, &body)
}

fn event_json(e: &CostEvent) -> serde_json::Value {
    json!({
        "id": e.id, "kind": e.kind.name(), "scope": e.scope,
        "from": e.from.to_string(), "to": e.to.to_string(),
        "factor": e.factor, "note": e.note,
    })
}

/// `POST /_sim/cost/restate`: a past day's cost of a subscription changes
/// by `factor`, as Azure's recent days do while charges settle.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restate {
    subscription_id: String,
    date: NaiveDate,
    factor: f64,
}

async fn restate(State(st): St, Json(req): Json<Restate>) -> Response<Body> {
    if !(req.factor > 0.0 && req.factor.is_finite()) {
        return bad_request("factor is a positive number");
    }
    let mut world = st.world_mut();
    let Some(sub) = world
        .subscription(&req.subscription_id)
        .map(|s| s.id.clone())
    else {
        return not_found(format!("no subscription '{}'", req.subscription_id));
    };
    if req.date > world.today() || req.date < world.cost_start() {
        return bad_request("date must be a day with cost: between cost_start and today");
    }
    let n = world.cost_events.len();
    let event = CostEvent {
        id: posture_guid(world.seed, &format!("event:{n}:restate:{sub}:{}", req.date)),
        kind: EventKind::Restatement,
        scope: format!("/subscriptions/{sub}"),
        from: req.date,
        to: req.date,
        factor: req.factor,
        note: "restated".into(),
        created: chrono::Utc::now(),
    };
    let body = event_json(&event);
    world.cost_events.push(event);
    world.generation += 1;
    ok(body)
}

/// `PUT /_sim/cost/headers`: `{"family": "qpu" | "entity"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Family {
    family: String,
}

async fn set_headers(State(st): St, Json(req): Json<Family>) -> Response<Body> {
    let Some(family) = CostHeaders::parse(&req.family) else {
        return bad_request("family is qpu or entity");
    };
    let mut faults = st.faults();
    faults.cost_headers = family;
    st.set_faults(faults);
    ok(json!({ "family": family }))
}

async fn get_headers(State(st): St) -> Response<Body> {
    ok(json!({ "family": st.faults().cost_headers }))
}
