#!/usr/bin/env bash
# Runs Microsoft's Python SDKs against `cloudkeep sim` (see tests/sdk/FINDINGS.md).
#
#   CLOUDKEEP_BIN  simulator binary (default target/debug/cloudkeep)
#   PYTHON         interpreter for the venv (default python3; CPython 3.11 tested)
#   extra arguments go to pytest (e.g. -k cost -x)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="${CLOUDKEEP_BIN:-$target/debug/cloudkeep}"
python="${PYTHON:-python3}"
venv="$target/sdk-venv"
req="$here/requirements.txt"

if [[ ! -x "$bin" ]]; then
    echo "run.sh: simulator binary not found at $bin (build it or set CLOUDKEEP_BIN)" >&2
    exit 2
fi

# A venv per requirements: reuse it while requirements.txt is unchanged.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/cloudkeep-sdk.XXXXXX")"
sim_pid=""
cleanup() {
    if [[ -n "$sim_pid" ]] && kill -0 "$sim_pid" 2>/dev/null; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/certs"
: >"$work/sim.out"
"$bin" sim --preset demo --seed 7 --listen 127.0.0.1:0 --cert-dir "$work/certs" \
    >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!

# Wait (at most 60 s) for the single JSON line {"url","ca"}.
line=""
for _ in $(seq 1 600); do
    if [[ "$(wc -l <"$work/sim.out")" -ge 1 ]]; then
        line="$(head -n 1 "$work/sim.out")"
        break
    fi
    if ! kill -0 "$sim_pid" 2>/dev/null; then
        echo "run.sh: simulator exited early:" >&2
        cat "$work/sim.err" >&2
        exit 2
    fi
    sleep 0.1
done
if [[ -z "$line" ]]; then
    echo "run.sh: simulator printed nothing within 60 s" >&2
    cat "$work/sim.err" >&2
    exit 2
fi

SIM_URL="$("$venv/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["url"])' "$line")"
CA="$("$venv/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["ca"])' "$line")"
export SIM_URL
export REQUESTS_CA_BUNDLE="$CA"
# Nothing from the environment may send the SDKs elsewhere.
unset AZURE_AUTHORITY_HOST AZURE_REGIONAL_AUTHORITY_NAME HTTPS_PROXY https_proxy HTTP_PROXY http_proxy || true
export NO_PROXY="127.0.0.1,localhost"

status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$here" "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "--- simulator stderr (last 40 lines) ---" >&2
    tail -n 40 "$work/sim.err" >&2 || true
fi
exit $status
