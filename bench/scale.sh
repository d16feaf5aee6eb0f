#!/usr/bin/env bash
# Data-scale benchmark: debt lookups and the event feed on a database with
# 1,000,000 consents and 10,000,000 usage records, beside the same scenarios
# on an (almost) empty database, in one run on one machine.
#
#   bench/scale.sh [--engine sqlite|postgres] [--consents N] [--usage N]
#                  [--duration S] [--warmup S] [--connections N] [--no-write]
#
# 1. starts `samtykke serve` once on a fresh database (migrations, sandbox
#    client), stops it;
# 2. fills it directly with SQL (sqlite3 / psql; recursive CTE /
#    generate_series) with 1,000 consents, one creation event each, and 10
#    usage records per consent, all of the sandbox client: the "empty"
#    baseline (enough events for full 100-event feed pages);
# 3. starts the server, runs `debt` and `feed` (bench/README.md), stops it;
# 4. fills the rest up to --consents (default 1,000,000) consents, as many
#    events, and --usage (default 10,000,000) usage records, then ANALYZE;
# 5. starts the server again and runs `debt` and `feed`;
# 6. writes both, their ratio and the generation times into BENCHMARKS.md
#    (between `<!-- results:scale-ENGINE:begin/end -->`).
#
# Needs the binaries of bench/run.sh (target/release/samtykke and
# samtykke-bench; build with bench/run.sh or cargo) and the sqlite3 CLI
# (installed with apt-get when missing) or psql. Loopback only.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command_line="bench/scale.sh${*:+ $*}"

engine=sqlite
consents=1000000
usage=10000000
base_consents=1000
duration=8
warmup=2
connections=64
threads=2
write=1
. "$root/bench/postgres-url.sh"

while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --consents) consents="$2"; shift 2 ;;
    --usage) usage="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --no-write) write=0; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$engine" in sqlite|postgres) ;; *) echo "--engine sqlite|postgres" >&2; exit 2 ;; esac
[ "$consents" -gt "$base_consents" ] || { echo "--consents must exceed $base_consents" >&2; exit 2; }
ratio=$((usage / consents))
[ "$ratio" -ge 1 ] || { echo "--usage must be at least --consents" >&2; exit 2; }
if ! awk -v d="$duration" -v w="$warmup" 'BEGIN { exit !(d > 0 && w >= 0 && d + w <= 15) }'; then
  echo "--warmup + --duration must be at most 15 seconds" >&2; exit 2
fi

log() { printf '== %s\n' "$*" >&2; }

server_bin="$root/target/release/samtykke"
driver="$root/target/release/samtykke-bench"
[ -x "$server_bin" ] && [ -x "$driver" ] || { echo "build first (bench/run.sh builds both)" >&2; exit 1; }
if [ "$engine" = sqlite ] && ! command -v sqlite3 >/dev/null 2>&1; then
  log "installing sqlite3 (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
fi
if [ "$engine" = postgres ]; then
  command -v psql >/dev/null 2>&1 || { echo "psql is needed for --engine postgres" >&2; exit 1; }
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/samtykke-scale.XXXXXX")"
schema=""
pid=""
stop_server() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""; fi
}
cleanup() {
  stop_server
  if [ -n "$schema" ]; then
    psql "$pg_base" -qtAc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$engine" = sqlite ]; then
  db_file="$work/scale.db"
  database_url="sqlite://$db_file"
else
  schema="samtykke_scale_$(date +%s)_$$"
  psql "$pg_base" -qtAc "CREATE SCHEMA $schema" >/dev/null
  sep='?'; case "$pg_base" in *\?*) sep='&' ;; esac
  database_url="${pg_base}${sep}options=-c%20search_path%3D${schema}"
fi

# start_server NAME: one server on a free loopback port; sets $pid and $base.
start_server() {
  local out="$work/$1.out"
  : >"$out"
  SAMTYKKE_DATABASE_URL="$database_url" "$server_bin" serve --listen 127.0.0.1:0 --admin-listen off \
    >"$out" 2>"$work/$1.log" &
  pid=$!
  for _ in $(seq 1 1200); do
    if grep -q '^  client_secret' "$out"; then
      base="$(sed -n 's/^Samtykke listening on //p' "$out")"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/$1.log" >&2; echo "server exited" >&2; exit 1; }
    sleep 0.05
  done
  echo "server did not start" >&2; exit 1
}

# fill FROM COUNT: consents FROM … FROM+COUNT-1 (ids sort in that order),
# one SAMTYKKE_OPPRETTET event each, and $ratio usage records each.
# Half are 30-day agreement consents (1 in 10 of them revoked), half are
# consumed regular consents; persons spread over 200,000 national numbers.
fill() {
  local from="$1" count="$2" to=$(($1 + $2 - 1))
  local u_from=$(($1 * ratio)) u_to=$(( ($1 + $2) * ratio - 1 ))
  local now; now="$(date +%s)"
  if [ "$engine" = sqlite ]; then
    sqlite3 "$db_file" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -262144;
BEGIN;
WITH RECURSIVE s(i) AS (SELECT $from UNION ALL SELECT i + 1 FROM s WHERE i < $to)
INSERT INTO consents (id, client_id, nin, purpose, kind, duration_days, client_consent_id,
                      created_at, expires_at, status, revoked_by, ended_at)
SELECT printf('%08x-5ca1-4000-8000-%012x', i, i), '$client_id',
       printf('%011d', 10000000000 + i % 200000), 'presentation',
       CASE WHEN i % 2 = 0 THEN 'agreement' ELSE 'regular' END,
       CASE WHEN i % 2 = 0 THEN 30 ELSE 0 END,
       CASE WHEN i % 2 = 0 THEN printf('scale-%d', i) END,
       $now - 86400,
       CASE WHEN i % 2 = 0 THEN $now + 29 * 86400 ELSE $now - 86400 + 600 END,
       CASE WHEN i % 2 = 1 THEN 'consumed' WHEN i % 20 = 0 THEN 'revoked' ELSE 'active' END,
       CASE WHEN i % 20 = 0 THEN 'individual' END,
       CASE WHEN i % 2 = 1 OR i % 20 = 0 THEN $now - 86400 END
FROM s;
WITH RECURSIVE s(i) AS (SELECT $from UNION ALL SELECT i + 1 FROM s WHERE i < $to)
INSERT INTO consent_events (event_id, event_type, client_id, consent_id, purpose,
                            client_consent_id, created_at_us)
SELECT printf('%08x-e7e7-4000-8000-%012x', i, i), 'SAMTYKKE_OPPRETTET', '$client_id',
       printf('%08x-5ca1-4000-8000-%012x', i, i), 'presentation',
       CASE WHEN i % 2 = 0 THEN printf('scale-%d', i) END, ($now - 86400) * 1000000 + i
FROM s;
WITH RECURSIVE s(j) AS (SELECT $u_from UNION ALL SELECT j + 1 FROM s WHERE j < $u_to)
INSERT INTO consent_usage (consent_id, client_id, used_at_us, purpose, trace_id)
SELECT printf('%08x-5ca1-4000-8000-%012x', j / $ratio, j / $ratio), '$client_id',
       ($now - 3600) * 1000000 + j, 'presentation', printf('%08x-7ace-4000-8000-%012x', j, j)
FROM s;
COMMIT;
ANALYZE;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
  else
    psql "$database_url" -q -v ON_ERROR_STOP=1 <<SQL
SET synchronous_commit = off;
BEGIN;
INSERT INTO consents (id, client_id, nin, purpose, kind, duration_days, client_consent_id,
                      created_at, expires_at, status, revoked_by, ended_at)
SELECT lpad(to_hex(i), 8, '0') || '-5ca1-4000-8000-' || lpad(to_hex(i), 12, '0'), '$client_id',
       (10000000000 + i % 200000)::text, 'presentation',
       CASE WHEN i % 2 = 0 THEN 'agreement' ELSE 'regular' END,
       CASE WHEN i % 2 = 0 THEN 30 ELSE 0 END,
       CASE WHEN i % 2 = 0 THEN 'scale-' || i END,
       $now - 86400,
       CASE WHEN i % 2 = 0 THEN $now + 29 * 86400 ELSE $now - 86400 + 600 END,
       CASE WHEN i % 2 = 1 THEN 'consumed' WHEN i % 20 = 0 THEN 'revoked' ELSE 'active' END,
       CASE WHEN i % 20 = 0 THEN 'individual' END,
       CASE WHEN i % 2 = 1 OR i % 20 = 0 THEN $now - 86400 END
FROM generate_series($from::bigint, $to) AS i;
INSERT INTO consent_events (event_id, event_type, client_id, consent_id, purpose,
                            client_consent_id, created_at_us)
SELECT lpad(to_hex(i), 8, '0') || '-e7e7-4000-8000-' || lpad(to_hex(i), 12, '0'),
       'SAMTYKKE_OPPRETTET', '$client_id',
       lpad(to_hex(i), 8, '0') || '-5ca1-4000-8000-' || lpad(to_hex(i), 12, '0'), 'presentation',
       CASE WHEN i % 2 = 0 THEN 'scale-' || i END, ($now - 86400)::bigint * 1000000 + i
FROM generate_series($from::bigint, $to) AS i;
INSERT INTO consent_usage (consent_id, client_id, used_at_us, purpose, trace_id)
SELECT lpad(to_hex(j / $ratio), 8, '0') || '-5ca1-4000-8000-' || lpad(to_hex(j / $ratio), 12, '0'),
       '$client_id', ($now - 3600)::bigint * 1000000 + j, 'presentation',
       lpad(to_hex(j), 8, '0') || '-7ace-4000-8000-' || lpad(to_hex(j), 12, '0')
FROM generate_series($u_from::bigint, $u_to) AS j;
COMMIT;
ANALYZE;
CHECKPOINT;
SQL
  fi
}

counts() {
  local q="SELECT (SELECT count(*) FROM consents) || ' consents, ' || (SELECT count(*) FROM consent_events) || ' events, ' || (SELECT count(*) FROM consent_usage) || ' usage records'"
  if [ "$engine" = sqlite ]; then sqlite3 "$db_file" "$q"; else psql "$database_url" -qtAc "$q"; fi
}
db_size() {
  if [ "$engine" = sqlite ]; then
    du -cm "$db_file"* | tail -1 | cut -f1
  else
    psql "$database_url" -qtAc "SELECT (sum(pg_total_relation_size(c.oid)) / 1048576)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$schema' AND c.relkind = 'r'"
  fi
}

results="$work/results.jsonl"
: >"$results"
# measure LABEL: debt and feed against a fresh server on the database as it is.
measure() {
  start_server "$1"
  local id secret
  id="$(sed -n 's/^  client_id *//p' "$work/$1.out")"
  secret="$(sed -n 's/^  client_secret *//p' "$work/$1.out")"
  for scenario in debt feed; do
    log "$1: scenario $scenario, $connections connections, ${warmup}s + ${duration}s"
    "$driver" run --scenario "$scenario" --base "$base" --client-id "$id" --client-secret "$secret" \
      --connections "$connections" --duration "$duration" --warmup "$warmup" --threads "$threads" \
      | sed "s/^{/{\"data\":\"$1\",/" | tee -a "$results" >&2
    sleep 1
  done
  stop_server
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "engine $engine: creating the schema and the sandbox client"
start_server init
client_id="$(sed -n 's/^  client_id *//p' "$work/init.out")"
stop_server

log "filling the baseline: $base_consents consents, $((base_consents * ratio)) usage records"
fill 0 "$base_consents"
empty_counts="$(counts)"
log "baseline: $empty_counts"
measure empty

rest=$((consents - base_consents))
log "filling $rest more consents, as many events, $((rest * ratio)) more usage records"
t0="$(date +%s)"
fill "$base_consents" "$rest"
fill_s=$(( $(date +%s) - t0 ))
full_counts="$(counts)"
full_mb="$(db_size)"
log "filled in ${fill_s}s: $full_counts, ${full_mb} MB"
measure full

# ---------------------------------------------------------------- report --
row() { # row DATA SCENARIO FIELD
  grep "\"data\":\"$1\"" "$results" | grep "\"scenario\":\"$2\"" | sed -n "s/.*\"$3\":\([0-9.]*\).*/\1/p" | head -1
}
table="$work/table.md"
{
  echo "| scenario | empty: requests/s | p50 ms | p99 ms | full: requests/s | p50 ms | p99 ms | errors (empty/full) | slowdown (empty ÷ full) | within 1.5×? |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for s in debt feed; do
    e="$(row empty "$s" rps)"; f="$(row full "$s" rps)"
    label='`GET /v1/debt/{id}` (duration consent)'; [ "$s" = feed ] && label='`GET /feed/v1/consent?fromSequenceNr=1&limit=100`'
    awk -v l="$label" -v e="$e" -v f="$f" -v e50="$(row empty "$s" p50_ms)" -v e99="$(row empty "$s" p99_ms)" \
        -v f50="$(row full "$s" p50_ms)" -v f99="$(row full "$s" p99_ms)" \
        -v ee="$(row empty "$s" errors)" -v fe="$(row full "$s" errors)" \
      'BEGIN { r = (f > 0) ? e / f : 0; printf "| %s | %d | %.2f | %.2f | %d | %.2f | %.2f | %s/%s | %.2f× | %s |\n", l, e, e50, e99, f, f50, f99, ee, fe, r, (r > 0 && r <= 1.5) ? "yes" : "**no**" }'
  done
} >"$table"
cat "$table"

engine_name=SQLite; [ "$engine" = postgres ] && engine_name=PostgreSQL
cpu="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)"
mem="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
commit="$(git rev-parse --short HEAD)"
git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || commit="$commit (with uncommitted changes)"
block="$work/block.md"
{
  echo "### Data scale, $engine_name, one process"
  echo
  echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC') · **commit:** \`$commit\` · **command:** \`$command_line\`"
  echo "- **Machine:** $(nproc) cores ($cpu), $mem memory, $(uname -sr); load average before the run: $load_before"
  echo "- **Empty:** $empty_counts (generated; enough events for full 100-event feed pages)"
  echo "- **Full:** $full_counts, ${full_mb} MB on disk; generated with SQL in ${fill_s} s (${ratio} usage records per consent, all of the sandbox client; half 30-day agreements, half consumed regular consents)"
  echo "- **Load:** \`samtykke-bench\`, $connections connections, ${warmup} s warm-up then ${duration} s per scenario, a fresh server process on each database; the debt scenario creates its 64 consents through the API at set-up, so each lookup finds its consent among the million and appends its usage record to the ten million"
  echo
  cat "$table"
} >"$block"
if [ "$write" = 1 ]; then
  "$driver" splice "$root/BENCHMARKS.md" "scale-$engine" "$block"
  log "wrote BENCHMARKS.md (section scale-$engine)"
fi
