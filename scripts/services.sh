#!/usr/bin/env bash
# Start (installing if absent) the services Genie uses: Redis always, PostgreSQL when
# DATABASE_URL points at it or GENIE_NEEDS_POSTGRES=1 (the tests), and the Debian
# chromium, node and npm for the browser and AI SDK client tests when GENIE_NEEDS_BROWSER=1. Idempotent.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

apt_install() {
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
if [ "${GENIE_NEEDS_BROWSER:-0}" = 1 ]; then
  # The browser tests (Debian's chromium) and the AI SDK client test (node + npm).
  [ -x /usr/bin/chromium ] || apt_install chromium
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /tmp/genie-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/genie-redis --logfile /tmp/genie-redis/redis.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

needs_postgres=${GENIE_NEEDS_POSTGRES:-0}
case "${DATABASE_URL:-}" in postgres*) needs_postgres=1 ;; esac
if [ "$needs_postgres" = 1 ]; then
  if ! command -v pg_ctlcluster >/dev/null && ! command -v psql >/dev/null; then apt_install postgresql; fi
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    if [ -z "$version" ]; then apt_install postgresql; version=$(ls /etc/postgresql | sort -V | tail -n1); fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || $SUDO -u postgres pg_ctlcluster "$version" main start
    for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.1; done
  fi
  # Trust (or our own) auth for the postgres role on loopback, as the tests expect.
  psql -h 127.0.0.1 -U postgres -Atc "select 1" >/dev/null 2>&1 || \
    $SUDO -u postgres psql -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
fi
