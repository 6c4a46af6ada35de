# shellcheck shell=bash
# shellcheck disable=SC2034  # passed, failed, compose, ... are read by the sourcing script
# shellcheck disable=SC2154  # name and tmp are set by the sourcing script
# tests/docker/lib.sh: what tests/docker/smoke and tests/docker/smoke-ha share.
#
# Sourced, not run.  The sourcing script sets `name` (its prefix: notes are
# "NAME: ...", the last line "docker NAME: N passed, M failed") and `tmp` (a
# directory of its own) first, calls lib_cleanup from its EXIT trap once its
# own containers and compose project are gone, and ends with finish.
#
#   pass/fail/note/show/elapsed/wait_for   counting checks, reporting, polling
#   engine_up            a Docker engine: the running one, or dockerd started
#                        here (as root) and stopped again by lib_cleanup;
#                        exit 77 (skipped) when none can be had
#   compose_find         sets compose=(docker compose) or (docker-compose)
#   debian_base          makes debian:bookworm-slim with debootstrap when missing
#   use_standin IMAGE DIR   IMAGE (e.g. redis:7) as the script will use it: a
#                        real one present is used as is; otherwise the test
#                        stand-in built from DIR, tagged IMAGE until lib_cleanup
#
# A stand-in carries the label org.ocbridge.test-stand-in=true, which is how a
# real image is told from a stand-in a crashed run left tagged.  A script that
# runs another one while it holds stand-in tags exports their names in
# OCB_DOCKER_STANDINS_HELD (space separated): the inner script uses them and
# leaves them to the outer one.

passed=0
failed=0
t0=$SECONDS
dockerd_pid=""
compose=()
standins_tagged=() # tags this script made and lib_cleanup removes
standins_used=()   # every IMAGE that is a stand-in in this run

pass() {
    passed=$((passed + 1))
    echo "PASS: $*"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
}
note() { echo "$name: $*"; }
elapsed() { echo "$((SECONDS - ${1:-$t0}))s"; }
# The last lines of a log, indented, for a failure message.
show() { tail -n "${2:-20}" "$1" 2>/dev/null | sed 's/^/    | /' || true; }

# Poll "$@" every half second until it succeeds or $1 seconds pass.
wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 2; i++)); do
        "$@" && return 0
        sleep 0.5
    done
    return 1
}

finish() {
    local image
    for image in "${standins_used[@]}"; do
        note "$image was the test stand-in (tests/docker/), not the official image"
    done
    note "wall time $(elapsed)"
    echo "docker $name: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "${finish_status:-0}" = 0 ] && exit 0
    exit 1
}

# No engine to be had is not a failure of ours: exit 77 ("skipped") so that
# scripts/test can tell it from a smoke test that ran and failed.
engine_up() {
    docker info >/dev/null 2>&1 && return 0
    command -v dockerd >/dev/null || { note "no Docker daemon running and no dockerd to start"; exit 77; }
    [ "$(id -u)" -eq 0 ] || { note "the Docker daemon is not running; start it or run as root"; exit 77; }
    note "starting dockerd"
    dockerd >"$tmp/dockerd.log" 2>&1 &
    dockerd_pid=$!
    wait_for 60 docker info >/dev/null 2>&1 || { note "dockerd did not come up:"; show "$tmp/dockerd.log"; exit 77; }
}

compose_find() {
    if docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif command -v docker-compose >/dev/null; then
        compose=(docker-compose)
    else
        note "neither 'docker compose' nor 'docker-compose' is installed"
        exit 1
    fi
}

debian_base() {
    local t=$SECONDS
    if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || { note "making debian:bookworm-slim needs root (debootstrap)"; exit 1; }
        command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
        note "making debian:bookworm-slim with debootstrap (about a minute)"
        # No mirror argument: debootstrap's default, as apt in the image will use.
        if ! timeout 900 debootstrap --variant=minbase bookworm "$tmp/rootfs" >"$tmp/debootstrap.log" 2>&1; then
            fail "debootstrap bookworm"
            show "$tmp/debootstrap.log"
            finish
        fi
        rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/*
        tar -C "$tmp/rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
        rm -rf "$tmp/rootfs"
    fi
    note "debian:bookworm-slim ready after $(elapsed "$t")"
}

is_standin() {
    [ "$(docker image inspect -f '{{index .Config.Labels "org.ocbridge.test-stand-in"}}' "$1" 2>/dev/null)" = true ]
}

# use_standin IMAGE DIR: see the head of this file.  Returns 1 (a check
# failed, the build log shown) when the stand-in does not build.
use_standin() {
    local image=$1 dir=$2 t=$SECONDS base
    base=$(basename "$dir")
    local standin=ocbridge-test/$base:stand-in
    if docker image inspect "$image" >/dev/null 2>&1 && ! is_standin "$image"; then
        note "using the $image image present"
        return 0
    fi
    standins_used+=("$image")
    case " ${OCB_DOCKER_STANDINS_HELD:-} " in
    *" $image "*)
        if is_standin "$image"; then
            note "$image is the stand-in the calling script holds"
            return 0
        fi
        ;;
    esac
    if ! timeout 900 docker build -t "$standin" "$dir" >"$tmp/standin-$base.log" 2>&1; then
        fail "build the $image stand-in"
        show "$tmp/standin-$base.log"
        return 1
    fi
    standins_tagged+=("$image")
    docker tag "$standin" "$image"
    note "$image is the test stand-in (${dir#"${top:-}/"}) after $(elapsed "$t")"
}

# Undo what this file started: stand-in tags, then dockerd -- unless
# containers not ours still run on it (another run uses the engine now).
lib_cleanup() {
    local image
    for image in "${standins_tagged[@]}"; do
        docker rmi "$image" >/dev/null 2>&1
    done
    if [ -n "$dockerd_pid" ]; then
        if [ -n "$(docker ps -q 2>/dev/null)" ]; then
            note "dockerd (pid $dockerd_pid) left running: other containers use it now"
            return 0
        fi
        kill -TERM "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 60); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
}
