#!/usr/bin/env bash
# Single-container mode: the API on $PORT (default 8000), $N_WORKERS (default 2) normalization
# workers and one maintenance worker (the reconciler), all children of this script.
#
# - SIGTERM / SIGINT are forwarded to every child; the script waits for them (at most
#   ARQ_JOB_COMPLETION_WAIT + 10 s, then SIGKILL) and exits 0 when all stopped cleanly.
# - When any child exits on its own, the others get SIGTERM and the script exits non-zero
#   (the child's code, or 1 when it exited 0), so the orchestrator restarts the container.
set -u

cd "$(dirname "$0")/.." || exit 1

N_WORKERS="${N_WORKERS:-2}"
PORT="${PORT:-8000}"
case "$N_WORKERS" in
    '' | *[!0-9]*) echo "start_web_and_workers: N_WORKERS must be a whole number, got '$N_WORKERS'" >&2; exit 2 ;;
esac
case "$PORT" in
    '' | *[!0-9]*) echo "start_web_and_workers: PORT must be a port number, got '$PORT'" >&2; exit 2 ;;
esac
completion_wait="${ARQ_JOB_COMPLETION_WAIT:-25}"
case "$completion_wait" in '' | *[!0-9]*) completion_wait=25 ;; esac
stop_timeout=$((completion_wait + 10))

pids=()
names=()
stop_signal=""

say() { echo "start_web_and_workers: $*" >&2; }

start() {
    local name="$1"
    shift
    [ -n "$stop_signal" ] && return  # stopping already: start nothing more
    "$@" &
    pids+=("$!")
    names+=("$name")
    say "started $name (pid $!): $*"
}

# shellcheck disable=SC2329  # called by the traps below
forward() {
    [ -n "$stop_signal" ] && return
    stop_signal="$1"
    say "received SIG$1: forwarding it to ${#pids[@]} processes"
    kill -s "$1" "${pids[@]}" 2>/dev/null
}
trap 'forward TERM' TERM
trap 'forward INT' INT

alive() { kill -0 "$1" 2>/dev/null; }

# Wait for every child; SIGKILL the ones still running after $stop_timeout seconds.
wait_all() {
    local deadline=$((SECONDS + stop_timeout)) pid
    for pid in "${pids[@]}"; do
        while alive "$pid"; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "still running after ${stop_timeout}s: SIGKILL to pid $pid"
                kill -s KILL "$pid" 2>/dev/null
            fi
            sleep 0.2
        done
    done
}

start api python -m uvicorn --factory src.api.main:app_from_env --host 0.0.0.0 --port "$PORT" \
    --timeout-graceful-shutdown 20
for i in $(seq 1 "$N_WORKERS"); do
    start "worker-$i" python workers.py --queue normalization
done
start maintenance python workers.py --queue maintenance

# Returns when a child exits or a trapped signal arrives (the trap then runs).
wait -n -p exited_pid
code=$?

if [ -n "$stop_signal" ]; then
    wait_all
    status=0
    # Clean: 0, or death by the forwarded signal itself (uvicorn re-raises it after its shutdown).
    # 127: unknown to bash any more (already reported).
    [ "$stop_signal" = TERM ] && by_signal=143 || by_signal=130
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" 2>/dev/null
        rc=$?
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 127 ] && [ "$rc" -ne "$by_signal" ]; then
            say "${names[$i]} (pid ${pids[$i]}) exited with code $rc"
            status=1
        fi
    done
    say "stopped (SIG$stop_signal)"
    exit "$status"
fi

name="?"
for i in "${!pids[@]}"; do
    [ "${pids[$i]}" = "${exited_pid:-}" ] && name="${names[$i]}"
done
say "$name (pid ${exited_pid:-?}) exited with code $code: stopping the others"
stop_signal=TERM
kill -s TERM "${pids[@]}" 2>/dev/null
wait_all
[ "$code" -eq 0 ] && code=1
exit "$code"
