# Helpers shared by loadtest/measure.sh and loadtest/smoke.sh (sourced).

# start_server LOG CMD...: starts CMD in the background with stderr in LOG,
# waits (bounded, 60 s) for its "ready" line, and sets SERVER_PID and
# SERVER_ADDR from it. jwtd and jwtd-load echo-server both log "addr=IP:PORT".
start_server() {
    local log=$1
    shift
    "$@" 2>"$log" &
    SERVER_PID=$!
    local i
    for i in $(seq 600); do
        if grep -q 'ready' "$log" 2>/dev/null; then
            SERVER_ADDR=$(grep 'ready' "$log" | grep -o 'addr=[0-9.:]*' | head -n1 | cut -d= -f2)
            if [ -n "$SERVER_ADDR" ]; then
                return 0
            fi
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server exited before it was ready:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "server not ready after 60 s:" >&2
    cat "$log" >&2
    return 1
}

# metrics_url LOG: http://ADDR/metrics of the server logging to LOG, from
# jwtd's "serving Prometheus metrics" line; prints nothing when /metrics is off.
metrics_url() {
    local addr
    addr=$(grep 'Prometheus metrics' "$1" 2>/dev/null | grep -o 'addr=[0-9.:]*' | head -n1 | cut -d= -f2)
    if [ -n "$addr" ]; then
        echo "http://$addr/metrics"
    fi
}

# stop_server: SIGTERM to the server started last, and wait for it.
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
