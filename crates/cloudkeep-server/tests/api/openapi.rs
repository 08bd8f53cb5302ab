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
