#!/usr/bin/env bash
# Start the local PostgreSQL cluster for the central service's tests if it is not running.
# Idempotent: a server already up (or DATABASE_URL pointing elsewhere) is left alone; never fails the run
# (the PostgreSQL tests themselves say what is wrong: they skip locally and FAIL under CI).
set -uo pipefail

if [ -n "${DATABASE_URL:-}" ]; then
  echo "start-postgres: DATABASE_URL is set; using that server"
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

ci_login() {
  # A freshly installed Debian cluster asks for a password over TCP. On a CI machine only, give the postgres
  # role the password the tests use by default (postgres:postgres@127.0.0.1; ignored where auth is trust).
  if [ -n "${CI:-}" ] && ! PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U postgres -d postgres \
      -qAtc 'select 1' >/dev/null 2>&1; then
    echo "start-postgres: CI: setting the postgres role's password for TCP logins"
    $SUDO su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD 'postgres'\"" || true
  fi
}

if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "start-postgres: a server already answers on 127.0.0.1:5432"
  ci_login
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
  echo "start-postgres: no PostgreSQL cluster installed here (Debian package: postgresql)"
  exit 0
fi
for version in $(ls /etc/postgresql); do
  for cluster in $(ls "/etc/postgresql/$version"); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start 2>&1 \
      | grep -v "already running" || true
  done
done
up=no
for _ in $(seq 1 30); do
  if pg_isready -q -h 127.0.0.1 -p 5432; then up=yes; break; fi
  sleep 1
done
if [ "$up" != yes ]; then
  echo "start-postgres: the server did not come up within 30 s"
  exit 0
fi
echo "start-postgres: server up on 127.0.0.1:5432"
ci_login
exit 0
