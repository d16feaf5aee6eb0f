#!/usr/bin/env bash
# Debt lookups at live creditors (issue 21): lookups/s and p50/p99 of
# `GET /v1/debt/{id}` when the person has loans at 5 live creditors that
# answer getDataForSSN in 20 ms each; then the same with one of them hanging
# (never answering), measured from the first lookup (before its breaker
# opens) and after a 2 s warm-up (after it opened).
#
#   bench/lookup.sh [--engine sqlite|postgres] [--duration S] [--connections N]
#                   [--latency-ms 20] [--no-build]
#
# The creditors are `samtykke-bench creditor` (bench/driver), plain HTTP on
# loopback (allowed in sandbox mode); the server runs in sandbox mode with
# its built-in simulated creditors disabled (their stored data is served
# without a call). Prints a Markdown table; see
# BENCHMARKS.md ("Lookups at live creditors").
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
engine=sqlite
duration=8
connections=64
latency=20
build=1
. "$root/bench/postgres-url.sh"
export SAMTYKKE_PG_POOL_SIZE="${SAMTYKKE_PG_POOL_SIZE:-6}"
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --latency-ms) latency="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
log() { printf '== %s\n' "$*" >&2; }

if [ "$build" = 1 ]; then
  log "building the release server and the load driver"
  cargo build --release -p samtykke --quiet
  cargo build --release --quiet --manifest-path bench/driver/Cargo.toml --target-dir "$root/target"
fi
server_bin="$root/target/release/samtykke"
driver="$root/target/release/samtykke-bench"

work="$(mktemp -d "${TMPDIR:-/tmp}/samtykke-lookup-bench.XXXXXX")"
pids=()
schema=""
cleanup() {
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  if [ -n "$schema" ]; then
    psql "$pg_base" -qtAc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$engine" = sqlite ]; then
  database_url="sqlite://$work/bench.db"
else
  schema="samtykke_lookup_bench_$(date +%s)_$$"
  psql "$pg_base" -qtAc "CREATE SCHEMA $schema" >/dev/null
  sep='?'; case "$pg_base" in *\?*) sep='&' ;; esac
  database_url="${pg_base}${sep}options=-c%20search_path%3D${schema}"
fi
export SAMTYKKE_DATABASE_URL="$database_url"

# start_creditor FI [--hang]: one creditor; sets $creditor_port.
start_creditor() {
  local fi="$1"; shift
  "$driver" creditor --fi "$fi" --latency-ms "$latency" "$@" >"$work/creditor-$fi.out" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 200); do
    creditor_port="$(sed -n 's/^listening on 127.0.0.1://p' "$work/creditor-$fi.out")"
    [ -n "$creditor_port" ] && return 0
    sleep 0.05
  done
  echo "creditor $fi did not start" >&2; exit 1
}

start_server() {
  "$server_bin" serve --sandbox --listen 127.0.0.1:0 --admin-listen off \
    --creditor-sync false >"$work/server.out" 2>"$work/server.log" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 600); do
    if grep -q '^  client_secret' "$work/server.out"; then
      base="$(sed -n 's/^Samtykke listening on //p' "$work/server.out")"
      client_id="$(sed -n 's/^  client_id *//p' "$work/server.out")"
      client_secret="$(sed -n 's/^  client_secret *//p' "$work/server.out")"
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "the server did not start" >&2; exit 1
}

# Five creditors (valid organisation numbers), the sandbox person a
# customer of each; the last one hangs in the second part.
fis=(923456783 912345688 987654325 987654333 922222223)
start_server
# The sandbox's own simulated creditors: disabled, so that only the five
# below are called.
for fi in $("$server_bin" creditor list --json 2>/dev/null | python3 -c 'import json,sys; print(" ".join(c.get("id") or c.get("org") or "" for c in json.load(sys.stdin)))'); do
  "$server_bin" creditor disable "$fi" >/dev/null 2>&1
done
customers=""
for i in "${!fis[@]}"; do
  fi="${fis[$i]}"
  start_creditor "$fi"
  "$server_bin" creditor add --org "$fi" --name "Bench Creditor $i" \
    --endpoint "http://127.0.0.1:$creditor_port/" --timeout-ms 500 >/dev/null 2>&1
  loan='{"type":"repaymentLoan","accountID":"'"$fi"'-1","timestamp":"2026-12-01T10:00:00Z","coBorrower":0,"originalBalance":10000000,"balance":5000000,"terms":120,"nominalInterestRate":450,"installmentCharges":5000,"installmentChargePeriod":"MONTHLY"}'
  customers="$customers${customers:+,}{\"customerID\":\"14842249091\",\"financialInstitutionID\":\"$fi\",\"financialInstitutionName\":\"Bench Creditor $i\",\"loans\":[$loan]}"
  printf '{"providerID":"9908:%s","customers":[%s]}' "$fi" "{\"customerID\":\"14842249091\",\"financialInstitutionID\":\"$fi\",\"financialInstitutionName\":\"Bench Creditor $i\",\"loans\":[$loan]}" >"$work/delivery-$fi.json"
  "$server_bin" debt import "$work/delivery-$fi.json" --allow-synthetic >/dev/null 2>&1
done

run() { # run NAME WARMUP DURATION
  "$driver" run --scenario debt --base "$base" --client-id "$client_id" --client-secret "$client_secret" \
    --connections "$connections" --warmup "$2" --duration "$3" --threads 2 | sed "s/^{/{\"case\":\"$1\",/"
}
results="$work/results.jsonl"
log "5 live creditors at ${latency} ms, $connections connections, engine $engine"
run "5 live creditors at ${latency} ms" 2 "$duration" | tee -a "$results" >&2

# One creditor hangs: restart it with --hang on the same port.
hung="${fis[4]}"
port="$(sed -n 's/^listening on 127.0.0.1://p' "$work/creditor-$hung.out")"
kill "${pids[5]}" 2>/dev/null; wait "${pids[5]}" 2>/dev/null || true
"$driver" creditor --fi "$hung" --listen "127.0.0.1:$port" --hang >"$work/creditor-$hung.out" 2>&1 &
pids+=("$!")
sleep 0.3
log "one creditor hanging: the first second (its breaker closed at the start)"
run "one hanging, first 1 s (breaker closed at the start)" 0 1 | tee -a "$results" >&2
log "one creditor hanging: after 2 s (its breaker open; a trial call each second)"
run "one hanging, after 2 s (breaker open)" 2 "$duration" | tee -a "$results" >&2

printf '| case | requests/s | p50 ms | p99 ms | max ms | errors |\n|---|---|---|---|---|---|\n'
while read -r line; do
  printf '%s\n' "$line" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("| %s | %.0f | %.1f | %.1f | %.1f | %s |" % (r["case"], r.get("rps",0), r.get("p50_ms",0), r.get("p99_ms",0), r.get("max_ms",0), r.get("errors",0)))'
done <"$results"
