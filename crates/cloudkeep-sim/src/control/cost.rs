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

use super::{bad_request, not_found, ok};
use crate::faults::CostHeaders;
use crate::server::json;
use crate::state::SimState;
use crate::world::cost::{CostEvent, EventKind, catalogue};
use crate::world::{CostProfile, Extra, Resource, hash_str, posture_guid};

type St = State<Arc<SimState>>;

pub fn routes() -> axum::Router<Arc<SimState>> {
    axum::Router::new()
        .route("/cost/events", post(add_event))
        .route("/cost/restate", post(restate))
        .route("/cost/headers", put(set_headers).get(get_headers))
}

/// `POST /_sim/cost/events`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
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
    /// A new resource of `type` in `location` that costs `daily` a day
    /// from `from`: a first charge in a new region or service.
    NewCharge {
        subscription_id: String,
        resource_group: String,
        #[serde(rename = "type")]
        resource_type: String,
        name: String,
        location: String,
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
            subscription_id,
            resource_group,
            resource_type,
            name,
            location,
            from,
            daily,
            note,
        } => {
            let Some(group) = world
                .resource_group(&subscription_id, &resource_group)
                .cloned()
            else {
                return not_found(format!(
                    "no resource group '{resource_group}' in subscription '{subscription_id}'"
                ));
            };
            let Some(spec) = catalogue::by_type(&resource_type).filter(|s| !s.meters.is_empty())
            else {
                return bad_request(format!(
                    "'{resource_type}' has no meters; use a type that costs (e.g. Microsoft.Cache/Redis)"
                ));
            };
            if !(daily > 0.0 && daily.is_finite()) {
                return bad_request("daily is a positive number of USD");
            }
            let id = catalogue::resource_id(&group.id(), spec.resource_type, &name);
            if world.resource(&id).is_some() {
                return json(
                    StatusCode::CONFLICT,
                    &json!({"error": {"code": "Conflict", "message": format!("resource '{id}' exists")}}),
                );
            }
            let created = from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
            world.add_resource(Resource {
                id: id.clone(),
                subscription_id: group.subscription_id.clone(),
                resource_group: group.name.clone(),
                resource_type: spec.resource_type.to_string(),
                name,
                location: location.to_ascii_lowercase(),
                kind: spec.kind.map(str::to_string),
                sku: None,
                tags: Default::default(),
                created,
                changed: created,
                deleted: None,
                cost: CostProfile {
                    daily,
                    growth_per_year: 0.0,
                    weekend_dip: 0.0,
                    reserved: false,
                },
                cost_seed: hash_str(seed, &id),
                extra: Extra::None,
            });
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
