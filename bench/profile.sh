#!/usr/bin/env bash
# Profiles the release server with perf (cpu-clock sampling) while the load
# driver runs one scenario against it on a fresh SQLite or PostgreSQL
# database, and prints where the server's time goes.
#
#   bench/profile.sh SCENARIO [--engine sqlite|postgres] [--seconds S] [--dwarf]
#
# Needs `perf` (apt-get install linux-perf) and the binaries built by
# bench/run.sh (target/release/samtykke, target/release/samtykke-bench).
# Writes perf.data and the reports into bench/profile-out/ (not committed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scenario="${1:?usage: bench/profile.sh SCENARIO [--engine sqlite|postgres] [--seconds S] [--dwarf]}"; shift
engine=sqlite; seconds=8; callgraph=(-g)
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --dwarf) callgraph=(--call-graph dwarf,16384); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$seconds" -le 12 ] || { echo "--seconds at most 12" >&2; exit 2; }
command -v perf >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }

out="$root/bench/profile-out"; mkdir -p "$out"
work="$(mktemp -d)"; schema=""; pid=""
. "$root/bench/postgres-url.sh"
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
  [ -n "$schema" ] && psql "$pg_base" -qtAc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$engine" = sqlite ]; then
  url="sqlite://$work/p.db"
else
  schema="samtykke_profile_$(date +%s)_$$"
  psql "$pg_base" -qtAc "CREATE SCHEMA $schema" >/dev/null
  url="${pg_base}?options=-c%20search_path%3D${schema}"
fi

SAMTYKKE_DATABASE_URL="$url" target/release/samtykke serve --listen 127.0.0.1:0 --admin-listen off >"$work/out" 2>"$work/log" &
pid=$!
until grep -q '^  client_secret' "$work/out"; do kill -0 "$pid" || exit 1; sleep 0.05; done
base="$(sed -n 's/^Samtykke listening on //p' "$work/out")"
id="$(sed -n 's/^  client_id *//p' "$work/out")"
secret="$(sed -n 's/^  client_secret *//p' "$work/out")"

# The driver's set-up and warm-up take the first seconds; perf then samples
# the server for the measured part.
target/release/samtykke-bench run --scenario "$scenario" --base "$base" --client-id "$id" --client-secret "$secret" \
  --connections 64 --warmup 2 --duration "$seconds" >"$out/$scenario-$engine.json" &
driver=$!
sleep 3
perf record -e cpu-clock -F 999 "${callgraph[@]}" -p "$pid" -o "$out/$scenario-$engine.perf.data" -- sleep $((seconds - 2)) 2>/dev/null
wait "$driver"
cat "$out/$scenario-$engine.json"
perf report -i "$out/$scenario-$engine.perf.data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio -g none \
  2>/dev/null | grep -v '^$' | head -80 | tee "$out/$scenario-$engine.self.txt"
perf report -i "$out/$scenario-$engine.perf.data" --no-children --sort comm --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | tee "$out/$scenario-$engine.threads.txt"
