# Sourced by the bench scripts: sets $pg_base, the PostgreSQL the benchmarks
# use. SAMTYKKE_BENCH_POSTGRES_URL names one; otherwise this machine's own,
# reached the way a server beside it would reach it: through its Unix socket
# when it has one (no TCP, no TLS; on this VM about 10% more debt lookups
# per second than over TCP on 127.0.0.1 with TLS, BENCHMARKS.md stop 14),
# else over TCP on 127.0.0.1:5432.
if [ -n "${SAMTYKKE_BENCH_POSTGRES_URL:-}" ]; then
  pg_base="$SAMTYKKE_BENCH_POSTGRES_URL"
elif [ -S /var/run/postgresql/.s.PGSQL.5432 ]; then
  pg_base="postgres://postgres@%2Fvar%2Frun%2Fpostgresql/test"
else
  pg_base="postgres://postgres@127.0.0.1:5432/test"
fi
