#!/usr/bin/env bash
# Serve Genie on the embedded defaults: a Celery worker and Daphne, stopped together.
set -euo pipefail
PORT=${1:-8000}
# The embedded default is a development server: DEBUG on unless the caller says otherwise
# (settings default it off).
export DEBUG="${DEBUG:-1}"
VENV=${VENV:-.venv}
"$VENV/bin/celery" -A genie worker --pool threads --concurrency "${GENIE_WORKER_CONCURRENCY:-8}" \
  --loglevel INFO --without-gossip --without-mingle --without-heartbeat --beat --schedule "${GENIE_BEAT_SCHEDULE:-var/celerybeat-schedule}" &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM
"$VENV/bin/daphne" -b "${GENIE_BIND:-127.0.0.1}" -p "$PORT" genie.asgi:application
