#!/bin/sh
# TEST STAND-IN (see Dockerfile): what the official image's entrypoint does,
# plus the protected-mode default the official image compiles in.
#   - arguments that start with "-" or a *.conf file are redis-server's;
#   - redis-server without a configuration file gets --protected-mode no first
#     (later arguments may still turn it on; with a file, the file decides,
#     and Debian's built-in default, yes, applies when it says nothing);
#   - as root, it hands /data to the redis user and drops to it.
set -e
case "${1:-}" in
-* | *.conf) set -- redis-server "$@" ;;
esac
if [ "${1:-}" = redis-server ]; then
    shift
    case "${1:-}" in
    "" | -*) set -- redis-server --protected-mode no "$@" ;;
    *) set -- redis-server "$@" ;;
    esac
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
