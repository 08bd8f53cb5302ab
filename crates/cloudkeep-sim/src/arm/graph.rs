//! Microsoft.ResourceGraph `resources` queries: a small subset of KQL over
//! the `Resources` table (`where` with `=~ == != contains startswith in~`,
//! `project`, `order by`, `limit`/`take`), paged by `$skipToken`.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{ArmError, ArmResult, Ctx, decode_offset, permitted};
use crate::server::json;
use crate::world::{Resource, World};

const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 1000;

fn invalid(message: &str) -> ArmError {
    ArmError::bad_request(
        "BadRequest",
        format!(
            "Please provide below info when asking for support: timestamp = {}, correlationId = {}. Query is invalid: {message}",
            chrono::Utc::now().to_rfc3339(),
            uuid::Uuid::new_v4()
        ),
    )
}

#[derive(Debug, Clone)]
enum Cmp {
    EqCi,
    Eq,
    Ne,
    NeCi,
    Contains,
    StartsWith,
    InCi,
}

#[derive(Debug, Clone)]
struct Cond {
    field: String,
    cmp: Cmp,
    values: Vec<String>,
}

#[derive(Debug, Default)]
struct Plan {
    /// Alternatives (or) of conjunctions (and), over all `where`s.
    wheres: Vec<Vec<Vec<Cond>>>,
    project: Option<Vec<(String, String)>>,
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

fn strip_quotes(s: &str) -> Option<String> {
    let s = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return Some(inner.to_string());
        }
    }
    None
}

fn parse_cond(raw: &str) -> Result<Cond, ArmError> {
    let t = raw
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let ops: &[(&str, Cmp)] = &[
        (" in~ ", Cmp::InCi),
        (" =~ ", Cmp::EqCi),
        (" !~ ", Cmp::NeCi),
        (" == ", Cmp::Eq),
        (" != ", Cmp::Ne),
        (" contains ", Cmp::Contains),
        (" startswith ", Cmp::StartsWith),
    ];
    for (op, cmp) in ops {
        if let Some(i) = t.to_ascii_lowercase().find(op) {
            let field = t[..i].trim().to_string();
            let rhs = t[i + op.len()..].trim();
            let values = if matches!(cmp, Cmp::InCi) {
                rhs.trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .filter_map(strip_quotes)
                    .collect()
            } else {
                vec![
                    strip_quotes(rhs)
                        .ok_or_else(|| invalid(&format!("expected a quoted value in '{t}'")))?,
                ]
            };
            return Ok(Cond {
                field,
                cmp: cmp.clone(),
                values,
            });
        }
    }
    Err(invalid(&format!("unsupported condition '{t}'")))
}

fn parse(query: &str) -> Result<Plan, ArmError> {
    let mut stages = query.split('|').map(str::trim);
    let table = stages.next().unwrap_or("");
    if !table.eq_ignore_ascii_case("resources") {
        return Err(invalid(&format!(
            "unsupported table '{table}'; the simulator serves 'Resources'"
        )));
    }
    let mut plan = Plan::default();
    for stage in stages {
        let (verb, rest) = stage.split_once(char::is_whitespace).unwrap_or((stage, ""));
        match verb.to_ascii_lowercase().as_str() {
            "where" => {
                let alternatives = rest
                    .split(" or ")
                    .map(|alt| {
                        alt.split(" and ")
                            .map(parse_cond)
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                plan.wheres.push(alternatives);
            }
            "project" => {
                let fields = rest
                    .split(',')
                    .map(|f| {
                        let f = f.trim();
                        match f.split_once('=') {
                            Some((alias, field)) => {
                                (alias.trim().to_string(), field.trim().to_string())
                            }
                            None => (f.to_string(), f.to_string()),
                        }
                    })
                    .filter(|(a, _)| !a.is_empty())
                    .collect();
                plan.project = Some(fields);
            }
            "order" | "sort" => {
                let rest = rest.trim();
                let rest = rest
                    .strip_prefix("by ")
                    .or_else(|| rest.strip_prefix("BY "))
                    .unwrap_or(rest);
                let mut parts = rest.split_whitespace();
                let field = parts
                    .next()
                    .ok_or_else(|| invalid("order by needs a field"))?
                    .to_string();
                let asc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("asc"));
                plan.order = Some((field, asc));
            }
            "limit" | "take" => {
                plan.limit = Some(
                    rest.trim()
                        .parse()
                        .map_err(|_| invalid(&format!("'{stage}' needs a number")))?,
                );
            }
            _ => return Err(invalid(&format!("unsupported operator '{verb}'"))),
        }
    }
    Ok(plan)
}

/// A resource as a Resource Graph row (types and groups lower-cased, as ARG does).
fn row(world: &World, r: &Resource) -> Map<String, Value> {
    let tenant = world
        .subscription(&r.subscription_id)
        .map(|s| s.tenant_id.clone())
        .unwrap_or_default();
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("name".into(), json!(r.name));
    m.insert("type".into(), json!(r.resource_type.to_ascii_lowercase()));
    m.insert("tenantId".into(), json!(tenant));
    m.insert("kind".into(), json!(r.kind.clone().unwrap_or_default()));
    m.insert("location".into(), json!(r.location));
    m.insert(
        "resourceGroup".into(),
        json!(r.resource_group.to_ascii_lowercase()),
    );
    m.insert("subscriptionId".into(), json!(r.subscription_id));
    m.insert("managedBy".into(), json!(""));
    m.insert(
        "sku".into(),
        r.sku
            .as_ref()
            .map(|s| json!({"name": s.name, "tier": s.tier}))
            .unwrap_or(Value::Null),
    );
    m.insert("plan".into(), Value::Null);
    m.insert(
        "properties".into(),
        json!({"provisioningState": "Succeeded"}),
    );
    m.insert(
        "tags".into(),
        Value::Object(r.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
    );
    m.insert("identity".into(), Value::Null);
    m.insert("zones".into(), Value::Null);
    m.insert("extendedLocation".into(), Value::Null);
    m
}

fn field_value(m: &Map<String, Value>, field: &str) -> Value {
    // `tags.env`, `tags['env']`, `properties.x`
    let path: Vec<String> = field
        .replace("['", ".")
        .replace("']", "")
        .replace("[\"", ".")
        .replace("\"]", "")
        .split('.')
        .map(str::to_string)
        .collect();
    let mut cur = Value::Object(m.clone());
    for (i, p) in path.iter().enumerate() {
        let next = match &cur {
            Value::Object(o) => {
                if i == 0 || path[0].eq_ignore_ascii_case("tags") {
                    o.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(p))
                        .map(|(_, v)| v.clone())
                } else {
                    o.get(p).cloned()
                }
            }
            _ => None,
        };
        cur = next.unwrap_or(Value::Null);
    }
    cur
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn holds(m: &Map<String, Value>, c: &Cond) -> bool {
    let actual = as_text(&field_value(m, &c.field));
    let v = &c.values;
    match c.cmp {
        Cmp::EqCi => v.iter().any(|x| x.eq_ignore_ascii_case(&actual)),
        Cmp::Eq => v.contains(&actual),
        Cmp::Ne => v.iter().all(|x| *x != actual),
        Cmp::NeCi => v.iter().all(|x| !x.eq_ignore_ascii_case(&actual)),
        Cmp::Contains => v.iter().any(|x| {
            actual
                .to_ascii_lowercase()
                .contains(&x.to_ascii_lowercase())
        }),
        Cmp::StartsWith => v.iter().any(|x| {
            actual
                .to_ascii_lowercase()
                .starts_with(&x.to_ascii_lowercase())
        }),
        Cmp::InCi => v.iter().any(|x| x.eq_ignore_ascii_case(&actual)),
    }
}

pub fn query(ctx: &Ctx) -> ArmResult {
    let quota = if ctx.st.config.throttle {
        let user = format!("{}:{}", ctx.claims.tid, ctx.caller());
        match ctx.st.throttle.take_graph(&user) {
            Ok(q) => Some(q),
            Err(wait) => {
                let mut e = ArmError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RateLimiting",
                    format!(
                        "Please provide below info when asking for support: timestamp = {}, correlationId = {}. Rate limit exceeded: the user quota of 15 queries per 5 seconds is used up.",
                        chrono::Utc::now().to_rfc3339(),
                        uuid::Uuid::new_v4()
                    ),
                );
                e.headers.push(("retry-after", wait.to_string()));
                e.headers.push(("x-ms-user-quota-remaining", "0".into()));
                e.headers
                    .push(("x-ms-user-quota-resets-after", format!("00:00:{wait:02}")));
                return Err(e);
            }
        }
    } else {
        None
    };
    let body = ctx.json_body()?;
    let text = body
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the request has no 'query'"))?;
    let plan = parse(text)?;
    let options = body.get("options").cloned().unwrap_or(Value::Null);
    let skip = options.get("$skip").and_then(Value::as_u64).unwrap_or(0) as usize;
    // The skip token carries the page size, so a next-page request need not repeat `$top`.
    let (offset, token_top) = match options.get("$skipToken").and_then(Value::as_str) {
        Some(t) => {
            let offset = decode_offset(t)
                .ok_or_else(|| invalid("the $skipToken is invalid or has expired"))?;
            (offset, decode_top(t))
        }
        None => (skip, None),
    };
    let top = options
        .get("$top")
        .and_then(Value::as_u64)
        .map(|t| t as usize)
        .or(token_top)
        .unwrap_or(DEFAULT_TOP)
        .clamp(1, MAX_TOP);
    let wanted: Option<Vec<String>> =
        body.get("subscriptions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_ascii_lowercase))
                    .collect()
            });

    let world = ctx.st.world();
    let readable: Vec<String> = world
        .subscriptions
        .iter()
        .filter(|s| s.tenant_id.eq_ignore_ascii_case(&ctx.claims.tid))
        .filter(|s| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(&s.id.to_ascii_lowercase()))
        })
        .filter(|s| {
            permitted(
                &world,
                ctx.caller(),
                "Microsoft.Resources/subscriptions/resources/read",
                &format!("/subscriptions/{}", s.id),
            )
        })
        .map(|s| s.id.to_ascii_lowercase())
        .collect();
    let mut rows: Vec<Map<String, Value>> = world
        .live_resources()
        .filter(|r| readable.contains(&r.subscription_id.to_ascii_lowercase()))
        .map(|r| row(&world, r))
        .filter(|m| {
            plan.wheres
                .iter()
                .all(|alts| alts.iter().any(|conj| conj.iter().all(|c| holds(m, c))))
        })
        .collect();
    drop(world);
    match &plan.order {
        Some((field, asc)) => {
            rows.sort_by(|a, b| {
                as_text(&field_value(a, field)).cmp(&as_text(&field_value(b, field)))
            });
            if !asc {
                rows.reverse();
            }
        }
        // Stable paging needs a stable order: by id, as ARG does.
        None => rows.sort_by(|a, b| as_text(&a["id"]).cmp(&as_text(&b["id"]))),
    }
    if let Some(limit) = plan.limit {
        rows.truncate(limit);
    }
    let total = rows.len();
    let end = offset.min(total).saturating_add(top).min(total);
    let data: Vec<Value> = rows[offset.min(end)..end]
        .iter()
        .map(|m| match &plan.project {
            Some(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(alias, f)| (alias.clone(), field_value(m, f)))
                    .collect(),
            ),
            None => Value::Object(m.clone()),
        })
        .collect();
    let mut out = json!({
        "totalRecords": total,
        "count": data.len(),
        "data": data,
        "facets": [],
        "resultTruncated": "false",
    });
    if end < total {
        out["$skipToken"] = json!(encode_token(end, top));
    }
    let mut response = json(StatusCode::OK, &out);
    if let Some((remaining, resets)) = quota {
        let h = response.headers_mut();
        h.insert(
            "x-ms-user-quota-remaining",
            axum::http::HeaderValue::from(remaining),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("00:00:{resets:02}")) {
            h.insert("x-ms-user-quota-resets-after", v);
        }
    }
    Ok(response)
}

fn encode_token(offset: usize, top: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{{\"o\":{offset},\"t\":{top}}}"))
}

fn decode_top(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("t")?.as_u64().map(|t| t as usize)
}
