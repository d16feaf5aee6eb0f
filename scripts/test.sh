#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration
# tests over real HTTP on SQLite and (when it answers) PostgreSQL.
#
#   SAMTYKKE_TEST_POSTGRES_URL  PostgreSQL for the tests (default postgres://postgres@127.0.0.1:5432/test)
#   SAMTYKKE_REQUIRE_POSTGRES=1 fail instead of skipping when PostgreSQL is unreachable
#
# The browser tests (tests/api/browser.rs) drive Debian's headless Chromium
# through chromedriver; this script installs both when they are missing and
# sets SAMTYKKE_REQUIRE_BROWSER=1 so those tests fail rather than skip.
#
# The upstream-identification tests (tests/api/upstream_identity.rs) start an
# independent OpenID provider, npm `oidc-provider` (crates/samtykke/tests/
# oidc-provider, Node.js 20+); this script installs it with `npm ci` when
# node_modules is missing and sets SAMTYKKE_REQUIRE_OIDC_PROVIDER=1 so those
# tests fail rather than skip.
#
# The browser tests check every page with axe-core (npm, crates/samtykke/
# tests/axe); this script installs it with `npm ci` when it is missing.
# Last, scripts/schemathesis.sh runs Schemathesis (PyPI, installed into a
# virtualenv under ~/.cache/samtykke/) against a sandbox server's
# /openapi.json: no 5xx, every response matches the schema (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url="${SAMTYKKE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

drop_test_schemas() {
  command -v psql >/dev/null 2>&1 || return 0
  # One schema per statement: dropping them all in one transaction needs a
  # lock per table and index of every schema, more than PostgreSQL's lock
  # table holds after a full run (about 110 schemas).
  local schema
  for schema in $(psql "$pg_url" -qtAc \
      "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'samtykke\_test\_%'" 2>/dev/null); do
    psql "$pg_url" -qtAc "DROP SCHEMA \"$schema\" CASCADE" >/dev/null 2>&1 || true
  done
}

install_browser() {
  # curl: the sandbox callback page's commands are run as shown (tests/api/sandbox_pages.rs).
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v curl >/dev/null 2>&1; then
    return 0
  fi
  echo "== installing Chromium, ChromeDriver and curl for the browser and sandbox-page tests"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -q chromium chromium-driver curl; then
    $sudo apt-get update -q
    $sudo apt-get install -y -q chromium chromium-driver curl
  fi
}
install_browser
export SAMTYKKE_REQUIRE_BROWSER=1

install_oidc_provider() {
  local dir=crates/samtykke/tests/oidc-provider
  if [ -d "$dir/node_modules/oidc-provider" ]; then
    return 0
  fi
  echo "== installing the test OpenID provider (npm ci in $dir)"
  if ! command -v npm >/dev/null 2>&1; then
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q nodejs npm || { $sudo apt-get update -q && $sudo apt-get install -y -q nodejs npm; }
  fi
  (cd "$dir" && npm ci --no-audit --no-fund)
}
install_oidc_provider
export SAMTYKKE_REQUIRE_OIDC_PROVIDER=1

install_axe() {
  # axe-core, injected into every page by the browser tests (required there
  # with SAMTYKKE_REQUIRE_BROWSER=1); npm is there after install_oidc_provider.
  local dir=crates/samtykke/tests/axe
  if [ -f "$dir/node_modules/axe-core/axe.min.js" ]; then
    return 0
  fi
  echo "== installing axe-core for the accessibility checks (npm ci in $dir)"
  (cd "$dir" && npm ci --no-audit --no-fund)
}
install_axe

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

test_tmp="${TMPDIR:-/tmp}"
remove_test_files() {
  rm -f "$test_tmp"/samtykke-test-*.db* "$test_tmp"/samtykke-test-schema-left-*.txt
}

# What the tests leave behind: each test removes its database (an RAII guard
# in tests/api/helpers.rs, also when it fails); this removes what a killed
# run left, at the start and whenever the script ends (finished, failed,
# Ctrl-C or SIGTERM).
postgres=0
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$pg_url"; then
  echo "== PostgreSQL answers at ${pg_url}: every storage and HTTP test runs on SQLite AND PostgreSQL"
  postgres=1
  drop_test_schemas
else
  echo "== SKIP PostgreSQL: nothing answers at ${pg_url}; tests run on SQLite only (each skipped test prints 'SKIP postgres')"
fi
remove_test_files
cleanup() {
  remove_test_files
  if [ "$postgres" = 1 ]; then drop_test_schemas; fi
}
# On Ctrl-C or SIGTERM: stop the tests (their own process group: cargo and
# the test binaries), clean up, and end with the same signal.
test_pid=""
stop() {
  trap - "$1" EXIT
  if [ -n "$test_pid" ]; then
    kill -"$1" -- "-$test_pid" 2>/dev/null || true
    wait "$test_pid" 2>/dev/null || true
  fi
  cleanup
  kill -"$1" $$
}
trap cleanup EXIT
trap 'stop INT' INT
trap 'stop TERM' TERM

echo "== cargo test --workspace"
set -m
cargo test --workspace &
test_pid=$!
set +m
wait "$test_pid"
test_pid=""

# The tests cleaned up after themselves: nothing of theirs is left (the
# EXIT trap would hide it, so this looks first).
echo "== nothing left behind by the tests"
left=$(find "$test_tmp" -maxdepth 1 \( -name 'samtykke-test-*' -o -name 'samtykke-chromium-*' \) 2>/dev/null || true)
if [ "$postgres" = 1 ]; then
  schemas=$(psql "$pg_url" -qtAc \
    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'samtykke\_test\_%'" 2>/dev/null || true)
  if [ -n "$schemas" ]; then left="$left${left:+
}$(printf 'PostgreSQL schema %s\n' $schemas)"; fi
fi
if [ -n "$left" ]; then
  echo "the tests left behind:" >&2
  echo "$left" >&2
  cat "$test_tmp"/samtykke-test-schema-left-*.txt 2>/dev/null >&2 || true
  exit 1
fi

echo "== schemathesis against /openapi.json (scripts/schemathesis.sh)"
scripts/schemathesis.sh
