#!/bin/sh
# Initialises the cluster on first start (password auth over TCP, POSTGRES_PASSWORD required),
# creates each database in POSTGRES_DATABASES (comma-separated) if missing on a server that listens
# only on its socket, then execs postgres in the foreground as PID 1, so `docker stop` (SIGINT, the
# image's STOPSIGNAL: a fast shutdown) reaches it and it removes its own postmaster.pid.
# POSTGRES_HOST (default 0.0.0.0) and POSTGRES_PORT (default 5432).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
host="${POSTGRES_HOST:-0.0.0.0}"
port="${POSTGRES_PORT:-5432}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  rm -f "$pwfile"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
fi
# A postmaster.pid left by a killed container names a PID of that container; postgres started by
# pg_ctl from this script (PID 1, its grandparent) takes it for stale when it is 1.
pg_ctl -D "$PGDATA" -w -t 60 -o "-c listen_addresses='' -p $port -k /run/postgresql" start >/dev/null
for db in $(printf '%s' "${POSTGRES_DATABASES:-}" | tr ',' ' '); do
  exists="$(psql -h /run/postgresql -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")"
  [ "$exists" = 1 ] || psql -h /run/postgresql -p "$port" -U postgres -qc "CREATE DATABASE \"$db\"" >/dev/null
done
pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
echo "fedai-postgres: starting on $host:$port (databases: ${POSTGRES_DATABASES:-none})"
exec postgres -D "$PGDATA" -c listen_addresses="$host" -p "$port" -k /run/postgresql
