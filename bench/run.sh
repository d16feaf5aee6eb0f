#!/usr/bin/env bash
# Samtykke's benchmark harness: builds the release binary and the load
# driver, starts the server(s) on a fresh database on free loopback ports,
# runs every scenario for a bounded time, measures memory and start-up time,
# stops the servers, and writes the results into BENCHMARKS.md.
#
#   bench/run.sh [--engine sqlite|postgres] [--processes N] [--duration S]
#                [--warmup S] [--connections N] [--threads N]
#                [--scenarios healthz,token,agreement,debt,feed,flow] [--no-wrk]
#                [--no-build] [--no-write] [--sqlite-synchronous full|normal]
#
# See bench/README.md. Traffic goes to 127.0.0.1 only; every scenario stops
# by itself after --warmup + --duration seconds (at most 15 s in all).
# --sqlite-synchronous is passed to every server (the servers run in
# sandbox mode, whose default is normal; production's is full).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command_line="bench/run.sh${*:+ $*}"

engine=sqlite
processes=1
duration=8
warmup=2
connections=64
threads=2
scenarios=healthz,token,agreement,debt,feed,flow
use_wrk=1
build=1
write=1
serve_flags=()
. "$root/bench/postgres-url.sh"
# PostgreSQL shares this machine's cores with the servers and the load
# generator: a pool of 6 connections per process did better here than the
# default 16 (docs/operations.md). Set SAMTYKKE_PG_POOL_SIZE to override.
export SAMTYKKE_PG_POOL_SIZE="${SAMTYKKE_PG_POOL_SIZE:-6}"

while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --processes) processes="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --no-wrk) use_wrk=0; shift ;;
    --no-build) build=0; shift ;;
    --no-write) write=0; shift ;;
    --sqlite-synchronous) serve_flags+=(--sqlite-synchronous "$2"); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$engine" in sqlite|postgres) ;; *) echo "--engine sqlite|postgres" >&2; exit 2 ;; esac
if ! awk -v d="$duration" -v w="$warmup" 'BEGIN { exit !(d > 0 && w >= 0 && d + w <= 15) }'; then
  echo "--warmup + --duration must be at most 15 seconds" >&2; exit 2
fi

log() { printf '== %s\n' "$*" >&2; }

# ------------------------------------------------------------------ tools --
if [ "$use_wrk" = 1 ] && ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >/dev/null 2>&1; then
    log "could not install wrk; skipping the wrk cross-check"
    use_wrk=0
  fi
fi

if [ "$build" = 1 ]; then
  log "building the release server (cargo build --release -p samtykke)"
  cargo build --release -p samtykke --quiet
  log "building the load driver (bench/driver)"
  cargo build --release --quiet --manifest-path bench/driver/Cargo.toml --target-dir "$root/target"
fi
server_bin="$root/target/release/samtykke"
driver="$root/target/release/samtykke-bench"
[ -x "$server_bin" ] && [ -x "$driver" ] || { echo "build first (no --no-build)" >&2; exit 1; }

# --------------------------------------------------------------- database --
work="$(mktemp -d "${TMPDIR:-/tmp}/samtykke-bench.XXXXXX")"
schema=""
pids=()
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
  command -v psql >/dev/null 2>&1 || { echo "psql is needed for --engine postgres" >&2; exit 1; }
  # A schema of its own, as the test suite does; dropped at the end.
  schema="samtykke_bench_$(date +%s)_$$"
  psql "$pg_base" -qtAc "CREATE SCHEMA $schema" >/dev/null
  sep='?'; case "$pg_base" in *\?*) sep='&' ;; esac
  database_url="${pg_base}${sep}options=-c%20search_path%3D${schema}"
fi

# ---------------------------------------------------------------- servers --
# start_server NAME [extra serve flags…]: starts one server on a free port,
# waits for its start-up summary; sets $started_pid and $started_base.
start_server() {
  local name="$1"; shift
  local out="$work/$name.out"
  : >"$out"
  SAMTYKKE_DATABASE_URL="$database_url" "$server_bin" serve --listen "${listen:-127.0.0.1:0}" --admin-listen 127.0.0.1:0 ${serve_flags[@]+"${serve_flags[@]}"} "$@" \
    >"$out" 2>"$work/$name.log" &
  started_pid=$!
  pids+=("$started_pid")
  for _ in $(seq 1 600); do
    if grep -q '^  client_secret' "$out"; then
      started_base="$(sed -n 's/^Samtykke listening on //p' "$out")"
      return 0
    fi
    kill -0 "$started_pid" 2>/dev/null || { cat "$work/$name.log" >&2; echo "server $name exited" >&2; exit 1; }
    sleep 0.05
  done
  echo "server $name did not start" >&2; exit 1
}

stop_servers() {
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
  done
  pids=()
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "engine $engine, $processes process(es), database $(printf '%s' "$database_url" | sed 's/:[^:@\/]*@/:***@/')"
start_server server1
bases=("$started_base")
server_pids=("$started_pid")
api="$started_base"
for i in $(seq 2 "$processes"); do
  # Every process shares the first one's issuer and API URL, as in production.
  start_server "server$i" --issuer "$api" --api-url "$api"
  bases+=("$started_base")
  server_pids+=("$started_pid")
done
client_id="$(sed -n 's/^  client_id *//p' "$work/server1.out")"
client_secret="$(sed -n 's/^  client_secret *//p' "$work/server1.out")"
base_list="$(IFS=,; echo "${bases[*]}")"
log "servers: $base_list (pids ${server_pids[*]})"

# -------------------------------------------------------------- scenarios --
results="$work/results.jsonl"
: >"$results"
# user + system CPU time of every server process, in clock ticks
cpu_ticks() {
  local total=0 pid t
  for pid in "${server_pids[@]}"; do
    t="$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    total=$((total + t))
  done
  echo "$total"
}
# CPU time of every PostgreSQL process (the postmaster's backends), in ticks;
# 0 on SQLite, which runs inside the server process.
db_ticks() {
  [ "$engine" = postgres ] || { echo 0; return; }
  local total=0 pid t
  for pid in $(pgrep -x postgres 2>/dev/null); do
    t="$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    total=$((total + t))
  done
  echo "$total"
}
peak_kb() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null || echo 0; }

IFS=, read -r -a scenario_list <<<"$scenarios"
for scenario in "${scenario_list[@]}"; do
  # Reset each server's peak RSS so that it reads per scenario.
  for pid in "${server_pids[@]}"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
  log "scenario $scenario: $connections connections, ${warmup}s warm-up + ${duration}s"
  cpu_before="$(cpu_ticks)"; db_before="$(db_ticks)"
  if "$driver" run --scenario "$scenario" --base "$base_list" --api "$api" \
      --client-id "$client_id" --client-secret "$client_secret" \
      --connections "$connections" --duration "$duration" --warmup "$warmup" --threads "$threads" \
      >>"$results"; then
    tail -n 1 "$results" >&2
    max=0
    for pid in "${server_pids[@]}"; do kb="$(peak_kb "$pid")"; [ "$kb" -gt "$max" ] && max="$kb"; done
    printf '{"kind":"rss","scenario":"%s","vmhwm_kb":%s}\n' "$scenario" "$max" >>"$results"
    cpu_after="$(cpu_ticks)"; db_after="$(db_ticks)"
    answered="$(tail -n 2 "$results" | head -n 1 | sed -n 's/.*"answered_all":\([0-9]*\).*/\1/p')"
    awk -v s="$scenario" -v t="$((cpu_after - cpu_before))" -v d="$((db_after - db_before))" \
      -v hz="$(getconf CLK_TCK)" -v n="${answered:-0}" -v pg="$([ "$engine" = postgres ] && echo 1 || echo 0)" \
      'BEGIN { if (n > 0) printf "{\"kind\":\"cpu\",\"scenario\":\"%s\",\"cpu_us_per_request\":%.1f,\"db_cpu_us_per_request\":%s}\n", s, t * 1e6 / hz / n, pg ? sprintf("%.1f", d * 1e6 / hz / n) : "null" }' >>"$results"
  else
    log "scenario $scenario failed; see above"
  fi
  sleep 1
done

# A wrk cross-check of the ceiling and of client credentials.
wrk_lines=""
if [ "$use_wrk" = 1 ]; then
  audience="$(printf '%s/v1/debt' "$api" | sed 's/:/%3A/g; s#/#%2F#g')"
  basic="$(printf '%s:%s' "$client_id" "$client_secret" | base64 -w0)"
  cat >"$work/token.lua" <<EOF
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&audience=${audience}&scope=debt.unsecured.presentation"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic ${basic}"
EOF
  wrk_total=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w }')
  for target in healthz token; do
    url="${bases[0]}/healthz"; script=()
    [ "$target" = token ] && { url="${bases[0]}/oauth2/token"; script=(-s "$work/token.lua"); }
    log "wrk $target: -t$threads -c$connections -d${wrk_total}s (one server)"
    out="$(wrk -t"$threads" -c"$connections" -d"${wrk_total}s" --latency "${script[@]}" "$url" 2>&1)" || true
    rps="$(printf '%s\n' "$out" | sed -n 's/^Requests\/sec:[[:space:]]*//p')"
    p50="$(printf '%s\n' "$out" | awk '$1=="50%" {print $2}')"
    p99="$(printf '%s\n' "$out" | awk '$1=="99%" {print $2}')"
    non2xx="$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*Non-2xx or 3xx responses:[[:space:]]*//p')"
    wrk_lines+="| wrk \`$target\` | $connections | ${rps:-?} | ${p50:-?} | ${p99:-?} | ${non2xx:-0} |"$'\n'
    sleep 1
  done
fi

# --------------------------------------------------- existing-db start-up --
# Every server is stopped; then one is started again on the (now filled)
# database, three times, and timed from exec to the first 200 of /readyz.
stop_servers
port="${bases[0]##*:}"
startup_ms=()
for run in 1 2 3; do
  t0="$(date +%s%N)"
  SAMTYKKE_DATABASE_URL="$database_url" "$server_bin" serve --listen "127.0.0.1:$port" --admin-listen off ${serve_flags[@]+"${serve_flags[@]}"} \
    >"$work/startup$run.out" 2>"$work/startup$run.log" &
  pids+=("$!")
  t1="$("$driver" wait-ready --base "http://127.0.0.1:$port" --timeout 10)"
  startup_ms+=("$(( (t1 - t0) / 1000000 ))")
  stop_servers
done
sorted=($(printf '%s\n' "${startup_ms[@]}" | sort -n))
startup_median="${sorted[1]}"
log "start-up to ready on the existing database: ${startup_ms[*]} ms (median $startup_median)"

# ---------------------------------------------------------------- report --
table="$("$driver" table "$results")"
printf '%s\n' "$table"

engine_name=SQLite; [ "$engine" = postgres ] && engine_name=PostgreSQL
mode="one process"; [ "$processes" -gt 1 ] && mode="$processes processes sharing one database"
key="${engine}-${processes}p"
cpu="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)"
mem_kb="$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo)"
mem="$(awk -v k="$mem_kb" 'BEGIN { printf "%.1f GiB", k / 1048576 }')"
commit="$(git rev-parse --short HEAD)"
git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || commit="$commit (with uncommitted changes)"
when="$(date -u '+%Y-%m-%d %H:%M UTC')"

block="$work/block.md"
{
  echo "### $engine_name, $mode"
  echo
  echo "- **Date:** $when · **commit:** \`$commit\` · **command:** \`$command_line\`"
  echo "- **Machine:** $(nproc) cores ($cpu), $mem memory, $(uname -sr)"
  echo "- **Load average before the run:** $load_before (other work on the machine skews the figures)"
  echo "- **Load:** \`samtykke-bench\` (Rust, hyper, $threads threads) on the same machine, $connections keep-alive connections, closed loop, ${warmup} s warm-up then ${duration} s measured per scenario; servers log at the default level to a file"
  [ "$engine" = postgres ] && echo "- **PostgreSQL:** on this machine, \`$pg_base\`; pool of $SAMTYKKE_PG_POOL_SIZE connections per process (\`SAMTYKKE_PG_POOL_SIZE\`)"
  [ "$processes" -gt 1 ] && echo "- **Split:** connection *i* goes to server *i* mod $processes ($base_list); peak RSS is the larger of the processes"
  echo
  printf '%s\n' "$table"
  if grep -q '"scenario":"flow"' "$results"; then
    echo
    echo 'The flow row counts **complete flows**: one flow is 7 HTTP requests to the server (`GET /oauth2/auth`, `GET` + `POST /oauth2/login`, `GET` + `POST /oauth2/consent`, `POST /oauth2/token` with the code, `GET /v1/debt`; the browser'"'"'s eighth hop, to the callback, goes to the client), so requests/s = 7 × flows/s. Its p50/p99 are of a whole flow, its CPU column is per HTTP request (× 7 per flow). Every flow starts as a new browser (an empty cookie jar of its own) and goes through TestID.'
  fi
  echo
  echo "Start-up to ready (exec → first \`200\` from \`/readyz\`) on the database as the run left it: **${startup_median} ms** median of ${startup_ms[*]} ms."
  if [ -n "$wrk_lines" ]; then
    echo
    echo "wrk cross-check (C load generator, $threads threads, warm-up included, one server):"
    echo
    echo "| tool / endpoint | conns | requests/s | p50 | p99 | non-2xx |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s' "$wrk_lines"
  fi
} >"$block"

if [ "$write" = 1 ]; then
  "$driver" splice "$root/BENCHMARKS.md" "$key" "$block"
  log "wrote BENCHMARKS.md (section $key)"
fi
