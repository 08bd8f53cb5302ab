#!/usr/bin/env bash
# Schemathesis (PyPI) against the API's OpenAPI document: every operation,
# authenticated as the demo organisation's owner (a throwaway organisation:
# with an owner's token the run revokes connections and tokens, as it
# should), bounded in examples. It fails on a server error, an answer
# outside the document's schema, a status or content type the document
# does not list. Business validation (a 422 for a value the schema allows,
# such as a malformed cursor) is the API's to decide, so the checks that
# second-guess it (positive/negative data acceptance) are not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/schemathesis-venv
if [[ ! -x $venv/bin/schemathesis ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'schemathesis==4.*'
fi

dir=$(mktemp -d)
trap 'kill "${demo:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
target/debug/cloudkeep demo --data-dir "$dir/demo" --port 0 --ready-file "$dir/ready.json" \
    >"$dir/demo.log" 2>&1 &
demo=$!
# (The demo is up after its first sync, whose spend backfill Cost
# Management's throttling paces: about a minute.)
for _ in $(seq 1 300); do
    [[ -f $dir/ready.json ]] && break
    kill -0 "$demo" 2>/dev/null || { cat "$dir/demo.log"; exit 1; }
    sleep 1
done
[[ -f $dir/ready.json ]] || { echo "the demo did not start"; cat "$dir/demo.log"; exit 1; }
url=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['url'])" "$dir/ready.json")
token=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['api_token'])" "$dir/ready.json")

"$venv/bin/schemathesis" run "$url/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --no-color
