#!/bin/sh
# Container entrypoint for every Crowd Monitor process (web, run_detection, run_alerts).
# RUN_MIGRATIONS=1 applies database migrations first; set it on exactly one service (the web one) so that
# several containers never migrate at the same time. Then `exec` replaces this shell with the command, so the
# command is PID 1, receives SIGTERM directly and can shut down cleanly.
set -eu

case "${RUN_MIGRATIONS:-0}" in
    1 | true | True | TRUE | yes)
        echo "entrypoint: applying database migrations" >&2
        python manage.py migrate --noinput
        ;;
esac

exec "$@"
