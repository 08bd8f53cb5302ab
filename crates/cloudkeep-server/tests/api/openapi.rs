//! The OpenAPI document is kept in `openapi.json` beside the crate's
//! manifest, so that every API change shows in review. Regenerate it with
//! `UPDATE_SNAPSHOTS=1 cargo test -p cloudkeep-server openapi`.

#[test]
fn openapi_document_matches_the_snapshot() {
    let doc = serde_json::to_string_pretty(&cloudkeep_server::openapi()).expect("json") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var("UPDATE_SNAPSHOTS").is_ok() {
        std::fs::write(&path, &doc).expect("write snapshot");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == doc,
        "the OpenAPI document changed; review it and run UPDATE_SNAPSHOTS=1 cargo test -p cloudkeep-server openapi"
    );
}

/// No state, role, status or level is a free string: each is an enum of
/// the document, so clients know every value.
#[test]
fn states_roles_statuses_and_levels_are_enums() {
    let doc = serde_json::to_value(cloudkeep_server::openapi()).expect("json");
    let closed = [
        "state",
        "status",
        "role",
        "roles_present",
        "sync_level",
        "trigger",
        "kind",
        "outcome",
        "resolution",
        "auth_method",
        "features_enabled",
        "features_disabled",
    ];
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut seen = 0;
    for (name, schema) in schemas {
        let Some(props) = schema["properties"].as_object() else {
            continue;
        };
        for (prop, s) in props {
            if !closed.contains(&prop.as_str()) {
                continue;
            }
            seen += 1;
            let text = s.to_string();
            assert!(
                text.contains("$ref") || text.contains("\"enum\""),
                "{name}.{prop} is a free value: {s}"
            );
        }
    }
    assert!(seen >= 12, "the check saw {seen} such fields");
}

/// Every operation answers its errors in the one error shape, and lists
/// the statuses it can answer.
#[test]
fn every_operation_lists_its_errors_in_the_error_shape() {
    let doc = serde_json::to_value(cloudkeep_server::openapi()).expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, ops) in paths {
        for (verb, op) in ops.as_object().expect("ops") {
            let responses = op["responses"].as_object().expect("responses");
            let errors: Vec<(&String, &serde_json::Value)> = responses
                .iter()
                .filter(|(s, _)| s.starts_with('4') || s.starts_with('5'))
                .collect();
            assert!(!errors.is_empty(), "{verb} {path} lists no error status");
            for (status, r) in errors {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{verb} {path} {status}"
                );
            }
        }
    }
}
