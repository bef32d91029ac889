#!/usr/bin/env bash
# Serve Genie on the embedded defaults (`make run`): migrate, then a Celery worker (with
# beat) and Daphne, started and stopped together. Quiet: warnings and errors only, and one
# line once Genie answers ("Genie is running at http://…").
#
# Ctrl+C, a closed terminal (SIGHUP) and SIGTERM stop both, and nothing is left behind:
# the two run in a session of their own, so the terminal's signals reach this script alone
# (a Celery worker takes SIGHUP as "restart", and a process group's Ctrl+C would have
# them print their shutdown chatter), and it stops them with SIGTERM and waits for them.
# A second Ctrl+C does not wait for a turn in progress (the worker's cold shutdown; the
# run is recovered as a lost worker's at the next start). When whoever started this script
# is gone, or its terminal is (a hang-up reaches only the session's leader: when that is make,
# make waits for this script, which no signal reached), it stops them too.
set -uo pipefail
PORT=${1:-8000}
BIND=${GENIE_BIND:-127.0.0.1}
VENV=${VENV:-.venv}
# The embedded default is a development server: DEBUG on unless the caller says otherwise
# (settings default it off), and only warnings and errors in the terminal.
export DEBUG="${DEBUG:-1}"
export GENIE_LOG_LEVEL="${GENIE_LOG_LEVEL:-WARNING}"
export PYTHONUNBUFFERED=1
# Run as root (a container), the worker warns that it is: noise for a development server
# that accepts no pickle (Celery refuses to start as root when it would).
AS_ROOT="ignore:You're running the worker with superuser privileges"
[ "$(id -u)" = 0 ] && export PYTHONWARNINGS="${PYTHONWARNINGS:-$AS_ROOT}"

"$VENV/bin/python" manage.py migrate --no-input -v 0 || exit 1
"$VENV/bin/python" manage.py collectstatic --no-input -v 0 || exit 1

WORKER="" SERVER="" NAP="" STARTED_BY=$PPID
# The worker's stdout carries only its banner and shutdown notices (its log is on stderr).
setsid "$VENV/bin/python" -m celery -A genie --quiet worker --pool threads --concurrency "${GENIE_WORKER_CONCURRENCY:-8}" \
  --loglevel WARNING --without-gossip --without-mingle --without-heartbeat \
  --beat --schedule "${GENIE_BEAT_SCHEDULE:-var/celerybeat-schedule}" >/dev/null &
WORKER=$!
setsid "$VENV/bin/python" -m daphne -v 0 -b "$BIND" -p "$PORT" genie.asgi:application &
SERVER=$!

stop() {
  trap 'kill -QUIT "$WORKER" 2>/dev/null; kill -KILL "$SERVER" 2>/dev/null' INT TERM HUP
  kill -TERM "$SERVER" "$WORKER" $NAP 2>/dev/null
  wait "$SERVER" "$WORKER" 2>/dev/null
  # What the worker leaves behind (its embedded beat, when the worker was killed -9 and
  # could not stop it): setsid made the worker's pid its process group's id.
  kill -TERM -- -"$WORKER" 2>/dev/null
  exit "$1"
}
trap 'stop 0' INT TERM HUP

running() { kill -0 "$WORKER" 2>/dev/null && kill -0 "$SERVER" 2>/dev/null; }
# Fields of /proc/<this script>/stat after "pid (comm) ": state, ppid, pgrp, session, tty_nr.
# A hang-up detaches every process of the session from the terminal (tty_nr 0).
stat_of_self() { local stat; read -r stat <"/proc/$$/stat" && echo "${stat##*) }"; }
tty_of_self() { set -- $(stat_of_self 2>/dev/null); echo "${5:-0}"; }
TTY=$(tty_of_self)
attached() {
  local fields
  fields=$(stat_of_self 2>/dev/null) || { kill -0 "$STARTED_BY" 2>/dev/null; return; }
  set -- $fields
  [ "$2" = "$STARTED_BY" ] && { [ "$TTY" = 0 ] || [ "$5" != 0 ]; }
}
nap() { sleep "$1" & NAP=$!; wait "$NAP"; NAP=""; }  # a trapped signal ends the wait at once
answers() { (exec 3<>"/dev/tcp/$1/$PORT") 2>/dev/null; }

HOST=$BIND
case "$BIND" in 0.0.0.0 | "::" | "[::]") HOST=127.0.0.1 ;; esac
until answers "$HOST"; do
  if ! running; then
    echo "Genie did not start: see the errors above." >&2
    stop 1
  fi
  nap 0.2
done
echo "Genie is running at http://$HOST:$PORT/ - open it in a browser: the first visit creates the first account, later ones sign in. Ctrl+C stops Genie."

while running && attached; do
  nap 1
done
running && stop 0
echo "Genie stopped: a process of it exited (see the errors above)." >&2
stop 1
