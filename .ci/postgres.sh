#!/usr/bin/env bash
# Installs Debian's PostgreSQL if missing, starts it on loopback and creates the test database.
# Prints the SQLAlchemy URL of that database on stdout (everything else goes to stderr).
set -euo pipefail
{
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  if ! pg_lsclusters -h | grep -q "^${version} main"; then
    pg_createcluster "$version" main
  fi
  sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "/etc/postgresql/${version}/main/postgresql.conf"
  pg_ctlcluster "$version" main start || pg_ctlcluster "$version" main status
  for _ in $(seq 1 30); do
    su postgres -c "pg_isready -q -h 127.0.0.1" && break
    sleep 1
  done
  su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='rfr'\" | grep -q 1 || psql -q -c \"CREATE ROLE rfr LOGIN SUPERUSER PASSWORD 'rfr'\""
  su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='rfr_test'\" | grep -q 1 || createdb -O rfr rfr_test"
} >&2
echo "postgresql+psycopg://rfr:rfr@127.0.0.1:5432/rfr_test"
