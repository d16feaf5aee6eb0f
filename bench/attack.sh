#!/usr/bin/env bash
# A bounded slow-headers attack or idle keep-alive flood against a fresh
# release server on loopback (issue 24), with `samtykke-bench attack`:
# probes measure GET /healthz (kept-alive and on a new connection each time)
# and the token endpoint before, during and after; the server's open
# descriptors are counted from /proc/PID/fd. Prints one JSON line per phase.
#
#   bench/attack.sh [--no-build] [SERVE FLAGS…] -- [ATTACK FLAGS…]
#   bench/attack.sh -- --mode slow-headers --sockets 5000 --sources 25 --interval 3 --duration 60
#   bench/attack.sh -- --mode idle --sockets 5000 --sources 25 --duration 60
#
# Only 127.0.0.1 is targeted; attack sockets come from 127.0.0.2… (see the
# driver's `attack` documentation). At most 10,000 sockets for 120 s.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build=1
serve_flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --) shift; break ;;
    *) serve_flags+=("$1"); shift ;;
  esac
done
if [ "$build" = 1 ]; then
  cargo build --release -p samtykke --quiet
  cargo build --release --quiet --manifest-path bench/driver/Cargo.toml --target-dir "$root/target"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/samtykke-attack.XXXXXX")"
pid=""
: >"$work/out"
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# The attack's sockets and the server's both need descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SAMTYKKE_DATABASE_URL="sqlite://$work/attack.db" target/release/samtykke serve \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --sandbox "${serve_flags[@]}" \
  >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 1 600); do
  grep -q '^  client_secret' "$work/out" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.05
done
base="$(sed -n 's/^Samtykke listening on //p' "$work/out")"
id="$(sed -n 's/^  client_id *//p' "$work/out")"
secret="$(sed -n 's/^  client_secret *//p' "$work/out")"
target/release/samtykke-bench attack --base "$base" --pid "$pid" \
  --client-id "$id" --client-secret "$secret" "$@"
admin="$(sed -n 's/^  admin *\(http:[^ ]*\).*/\1/p' "$work/out")"
# What the server counted.
curl -s "$admin/metrics" | grep -E '^samtykke_connections_' || true
