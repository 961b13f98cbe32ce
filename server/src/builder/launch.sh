#!/bin/sh
# caas-launch: start a process of a built app (installed in the stack image as
# /usr/local/bin/caas-launch).
#
#   caas-launch 'COMMAND'        e.g. caas-launch 'npm start', caas-launch 'java $JAVA_OPTS -jar app.jar'
#   caas-launch PROGRAM ARG...   the same, argv style (no shell parsing of the arguments)
#
# Sources every /app/.profile.d/*.sh (Heroku convention: buildpacks put PATH and other run-time
# settings there; sorted by name), cds to /app, then replaces itself with a shell running COMMAND
# (or with PROGRAM directly), so signals sent to the container reach the app.
# The shell is bash when there is one (the stack has it), else /bin/sh: bash replaces itself with
# the last simple command of COMMAND (`node server.js`, `cd x && java -jar y.jar`), so the app,
# not a shell, gets the SIGTERM of `docker stop` (tini, `--init`, signals only its child). Debian's
# dash would stay in between, die of the SIGTERM and leave the app to be SIGKILLed.
# The profile scripts run in bash too (third-party buildpacks write bash).
if [ -z "${BASH_VERSION:-}" ] && [ -z "${CAAS_LAUNCH_NO_BASH:-}" ] && [ -x /bin/bash ]; then
    CAAS_LAUNCH_NO_BASH=1 exec /bin/bash "$0" "$@"
fi
unset CAAS_LAUNCH_NO_BASH

if [ $# -eq 0 ]; then
    echo "usage: caas-launch 'COMMAND' | caas-launch PROGRAM [ARG...]" >&2
    exit 2
fi

: "${HOME:=/app}"
export HOME
cd /app || { echo "caas-launch: cannot cd to /app" >&2; exit 1; }

if [ -d /app/.profile.d ]; then
    for caas_profile in /app/.profile.d/*.sh; do
        [ -r "$caas_profile" ] || continue
        # shellcheck disable=SC1090
        . "$caas_profile"
    done
    unset caas_profile
fi
cd /app || exit 1

if [ $# -eq 1 ]; then
    if [ -n "${BASH_VERSION:-}" ]; then
        exec /bin/bash -c "$1"
    fi
    exec /bin/sh -c "$1"
fi
exec "$@"
