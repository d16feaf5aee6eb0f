#!/usr/bin/env bash
# getalldata of N generated customers (default 1,000,000) from the creditor
# simulator into a fresh sandbox database: wall time and peak RSS of the
# process that runs the sync (`samtykke creditor sync`, the same code the
# server's daily scheduler runs), measured with /usr/bin/time -v.
#
#   bench/creditor-getalldata.sh [--customers N] [--engine sqlite|postgres] [--bin PATH]
#
# Builds the release binary unless --bin is given. PostgreSQL: the database
# is SAMTYKKE_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test),
# in a schema of its own that is dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

customers=1000000
engine=sqlite
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --customers) customers="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release -p samtykke
  bin=target/release/samtykke
fi
[ -x /usr/bin/time ] || apt-get install -y time >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$engine" = postgres ]; then
    psql "$pg_base" -qtAc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

case "$engine" in
  sqlite) db="sqlite://$work/bench.db" ;;
  postgres)
    pg_base="${SAMTYKKE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
    schema="samtykke_bench_getalldata_$$"
    psql "$pg_base" -qtAc "CREATE SCHEMA $schema" >/dev/null
    db="$pg_base?options=-c%20search_path%3D$schema" ;;
  *) echo "--engine sqlite|postgres" >&2; exit 2 ;;
esac
export SAMTYKKE_DATABASE_URL="$db"

# A sandbox database (synthetic people, http:// creditors): start a sandbox
# server once, then stop it.
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
serve_port=$(port_of)
"$bin" serve --sandbox --listen "127.0.0.1:$serve_port" --admin-listen off --creditor-sync false >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
for _ in $(seq 1 100); do grep -q "listening" "$work/serve.log" && break; sleep 0.2; done
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true

org=971526920
sim_port=$(port_of)
"$bin" creditor simulate --listen "127.0.0.1:$sim_port" --generate "$customers" --org "$org" \
  --latency-ms 0 --jitter-ms 0 --page-size 10000 >"$work/sim.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do grep -q "listening" "$work/sim.log" && break; sleep 0.2; done

"$bin" creditor add --org "$org" --name "Generated Creditor" --endpoint "http://127.0.0.1:$sim_port/" >/dev/null
/usr/bin/time -v "$bin" creditor sync --org "$org" --creditor-page-size 10000 >"$work/sync.out" 2>"$work/sync.time"
cat "$work/sync.out"
wall=$(grep "Elapsed (wall clock)" "$work/sync.time" | awk '{print $NF}')
rss_kb=$(grep "Maximum resident set size" "$work/sync.time" | awk '{print $NF}')
echo "engine $engine, $customers customers: wall $wall, peak RSS $((rss_kb / 1024)) MB"
