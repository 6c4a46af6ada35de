#!/bin/sh
# TEST STAND-IN (see Dockerfile): what the official image's entrypoint does.
# Options alone are haproxy's; haproxy runs as master-worker (-W) in the
# foreground (-db).
set -e
case "${1:-}" in
-*) set -- haproxy "$@" ;;
esac
if [ "${1:-}" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi
exec "$@"
