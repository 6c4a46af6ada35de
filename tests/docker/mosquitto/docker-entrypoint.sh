#!/bin/sh
# TEST STAND-IN (see Dockerfile): what the official image's entrypoint does.
# As root, hand /mosquitto to the mosquitto user (read-only mounts stay as
# they are), then run the command.  Debian's Mosquitto 2.0.11 does not flush
# its stdout log when stdout is not a terminal (upstream's image does), so
# `docker logs` would stay empty: line-buffer it.
set -e
if [ "$(id -u)" = 0 ] && [ -d /mosquitto ]; then
    chown -R mosquitto:mosquitto /mosquitto 2>/dev/null || true
fi
exec stdbuf -oL "$@"
