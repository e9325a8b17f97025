#!/usr/bin/env bash
# Start the local PostgreSQL cluster for the central service's tests if it is not running.
# Idempotent: a server already up (or DATABASE_URL pointing elsewhere) is left alone and never fails the run.
set -uo pipefail

if [ -n "${DATABASE_URL:-}" ]; then
  echo "start-postgres: DATABASE_URL is set; using that server"
  exit 0
fi
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "start-postgres: a server already answers on 127.0.0.1:5432"
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
  echo "start-postgres: no PostgreSQL cluster installed here; the PostgreSQL tests will skip (or fail under CI)"
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
for version in $(ls /etc/postgresql); do
  for cluster in $(ls "/etc/postgresql/$version"); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start 2>&1 \
      | grep -v "already running" || true
  done
done
for _ in $(seq 1 30); do
  if pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "start-postgres: server up on 127.0.0.1:5432"
    exit 0
  fi
  sleep 1
done
echo "start-postgres: the server did not come up within 30 s; the PostgreSQL tests will say why"
exit 0
