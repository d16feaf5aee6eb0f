#!/usr/bin/env bash
# Property-based API testing of the resource APIs with Schemathesis
# (PyPI `schemathesis`, pinned below) against our own `/openapi.json`:
# starts a sandbox server on a free loopback port (SQLite in a temporary
# directory, `--admin-listen off`), gets real access tokens with the
# sandbox client's client-credentials grant, and runs Schemathesis once per
# audience with that audience's token, with a fixed seed and a bounded
# number of examples. Checks: no 5xx (`not_a_server_error`) and every
# documented response matches its schema (`response_schema_conformance`).
# Called by scripts/test.sh; runs on its own too:
#
#   scripts/schemathesis.sh                 # builds the debug binary if needed
#   SAMTYKKE_BIN=target/release/samtykke scripts/schemathesis.sh
#   SCHEMATHESIS_MAX_EXAMPLES=200 scripts/schemathesis.sh
#
# Schemathesis is installed into a virtualenv under
# ${XDG_CACHE_HOME:-~/.cache}/samtykke/ (Python 3.9+ with venv).
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
seed="${SCHEMATHESIS_SEED:-20261205}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/samtykke/schemathesis-$version"

if [ ! -x "$venv/bin/st" ]; then
  echo "== installing schemathesis $version into $venv"
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q python3 python3-venv ||
      { $sudo apt-get update -q && $sudo apt-get install -y -q python3 python3-venv; }
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

bin="${SAMTYKKE_BIN:-}"
if [ -z "$bin" ]; then
  # The binary the integration tests use; nothing to do when they were built.
  cargo test --workspace --no-run --quiet
  bin=target/debug/samtykke
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/samtykke-schemathesis.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --listen 127.0.0.1:0 --admin-listen off --sandbox \
  --database-url "sqlite://$work/schemathesis.db" >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 1 600); do
  grep -q '^  curl ' "$work/out" && break
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$work/log" >&2
    echo "the server exited at start" >&2
    exit 1
  fi
  sleep 0.05
done
base="$(sed -n 's/^Samtykke listening on //p' "$work/out")"
client_id="$(awk '$1 == "client_id" { print $2 }' "$work/out")"
client_secret="$(awk '$1 == "client_secret" { print $2 }' "$work/out")"
[ -n "$base" ] && [ -n "$client_id" ] && [ -n "$client_secret" ] || {
  cat "$work/out" "$work/log" >&2
  echo "no start-up summary" >&2
  exit 1
}

# token AUDIENCE_PATH SCOPE: a client-credentials access token.
token() {
  curl -fsS -u "$client_id:$client_secret" "$base/oauth2/token" \
    -d grant_type=client_credentials -d "audience=$base$1" --data-urlencode "scope=$2" |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

status=0
# run NAME TOKEN [st run options…]: one Schemathesis run; the options select
# the operations (and may give a --config-file first, as `config`).
run() {
  local name="$1" bearer="$2"
  shift 2
  local config=()
  if [ "${1:-}" = config ]; then
    config=(--config-file "$2")
    shift 2
  fi
  echo "== schemathesis: $name"
  # From the temporary directory: Schemathesis and Hypothesis leave state
  # in the working directory.
  if ! (cd "$work" && "$venv/bin/st" "${config[@]}" run "$base/openapi.json" --url "$base" \
      --header "Authorization: Bearer $bearer" \
      --checks not_a_server_error,response_schema_conformance \
      --max-examples "$max_examples" --seed "$seed" --workers 2 \
      --generation-database none --request-timeout 10 \
      --no-color --output-truncate false "$@") >"$work/$name.txt" 2>&1; then
    cat "$work/$name.txt"
    status=1
  else
    tail -n 12 "$work/$name.txt"
  fi
}

debt_token="$(token /v1/debt 'debt.unsecured.presentation debt.unsecured.processing')"
agreement_token="$(token /v1/consent/agreement consent.create)"
# One real consent of a sandbox person, so that the debt operations are also
# tried on a consent that exists (their 200 answers checked against the
# schema), besides random ids.
consent_id="$(curl -fsS -X PUT "$base/v1/consent/agreement" \
  -H "Authorization: Bearer $agreement_token" -H 'Content-Type: application/json' \
  -d '{"nin":"14842249091","scope_of_consent":"debt.unsecured.processing","consent_duration_days":30,"client_consent_id":"schemathesis-1"}' |
  "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["consent"]["id"])')"
cat >"$work/consent.toml" <<TOML
[[operations]]
include-path-regex = "^/v1/debt/"
parameters = { "path.id" = "$consent_id" }
TOML

run debt "$debt_token" --include-path-regex '^/v1/debt'
run debt-consent "$debt_token" config "$work/consent.toml" \
  --include-path-regex '^/v1/debt/' --exclude-method DELETE
run agreement "$agreement_token" --include-path /v1/consent/agreement
run feed "$(token /feed/v1/consent client.access.consent.events)" \
  --include-path-regex '^/feed/'

if ! kill -0 "$pid" 2>/dev/null; then
  echo "the server died during the run:" >&2
  cat "$work/log" >&2
  status=1
elif grep -q 'panicked' "$work/log"; then
  echo "the server logged a panic:" >&2
  grep -B2 -A10 'panicked' "$work/log" >&2
  status=1
fi
if [ "$status" != 0 ]; then
  echo "== schemathesis FAILED (seed $seed)" >&2
  exit 1
fi
echo "== schemathesis: no 5xx, every response matches the schema (seed $seed, ≤ $max_examples examples per operation)"
