#!/usr/bin/env bash
# `starledger bench http --url` against three `serve` instances behind nginx, then one
# instance behind nginx, then that instance alone: the scale-out figure and the
# single-instance figures beside it, measured the same way (the load generator in its own
# process, through the API), so the cost of the proxy and of the extra instances show apart.
#
#   deploy/bench/behind-nginx.sh [--webhooks N] [--reads N] [other `bench http` options]
#
# Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres:postgres@127.0.0.1:5432/postgres),
# Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379), nginx and psql/redis-cli on PATH,
# and the release binary (built if missing). It makes a scratch database and a Redis key
# prefix of its own and removes both, the instances and nginx when it ends, however it ends.
#
# nginx runs deploy/nginx/nginx.conf as users deploy it, with the same substitutions as
# tests/tests/behind_nginx.rs (ports, log paths, the upstream's servers: Debian's nginx 1.22
# has no `server … resolve`) and one more: the per-client-IP request limits (`limit_req`:
# webhooks 100 r/s, API 20 r/s) are switched off, because all the load comes from one
# loopback address and would otherwise measure nginx's limiter (raising the rates is not
# enough: nginx counts at millisecond granularity, so more than `burst` requests arriving in
# one millisecond are refused whatever the rate).
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVER_URL=${BENCH_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
REDIS=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
BIN=${STARLEDGER_BIN:-target/release/starledger}
[ -x "$BIN" ] || cargo build --release -p starledger-gateway --bin starledger
BENCH_ARGS=("$@")
[ ${#BENCH_ARGS[@]} -gt 0 ] || BENCH_ARGS=(--users 1000 --webhooks 20000 --reads 100000)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secret() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40; }

RUN=bench_nginx_$(date +%s)_$$
DATABASE_URL="${SERVER_URL%/*}/$RUN"
export BENCH_HELEKET_KEY; BENCH_HELEKET_KEY=$(secret)
export BENCH_SERVICE_KEY; BENCH_SERVICE_KEY=$(secret)
WORK=$(mktemp -d)
chmod 777 "$WORK"
PIDS=()

cleanup() {
    set +e
    [ -f "$WORK/nginx.pid" ] && kill -TERM "$(cat "$WORK/nginx.pid")" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    wait 2>/dev/null
    psql "$SERVER_URL" -qAtc "DROP DATABASE IF EXISTS $RUN WITH (FORCE)" >/dev/null
    redis-cli -u "$REDIS" --scan --pattern "$RUN:*" | xargs -r -n 1000 redis-cli -u "$REDIS" unlink >/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

psql "$SERVER_URL" -qAtc "CREATE DATABASE $RUN" >/dev/null
DATABASE_URL=$DATABASE_URL "$BIN" migrate >/dev/null

PORTS=()
for n in 1 2 3; do
    port=$(free_port)
    PORTS+=("$port")
    env DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS" CACHE_KEY_PREFIX="$RUN" \
        WEBHOOK_HOST=127.0.0.1 WEBHOOK_PORT="$port" TRUST_PROXY_HEADERS=true \
        HELEKET_MODE=sandbox API_KEY="$BENCH_HELEKET_KEY" \
        STARLEDGER_API_KEYS="bench:service:$BENCH_SERVICE_KEY" LOG_LEVEL=warn \
        "$BIN" serve >"$WORK/instance$n.log" 2>&1 &
    PIDS+=($!)
done
for port in "${PORTS[@]}"; do
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
        sleep 0.2
    done
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "instance on $port not ready" >&2; cat "$WORK"/instance*.log >&2; exit 1; }
done

# nginx on deploy/nginx/nginx.conf in front of the instances on the given ports; sets
# NGINX_PORT and leaves nginx running (its pid file is $WORK/nginx.pid).
start_nginx() {
    NGINX_PORT=$(free_port)
    local internal upstreams="" port
    internal=$(free_port)
    for port in "$@"; do upstreams+="server 127.0.0.1:$port max_fails=3 fail_timeout=10s; "; done
    grep -v '^\s*resolver' deploy/nginx/nginx.conf \
        | sed -e "s|server app:8001 resolve max_fails=3 fail_timeout=10s;|$upstreams|" \
              -e "s|pid /var/run/nginx.pid;|pid $WORK/nginx.pid;|" \
              -e "s|/var/log/nginx/|$WORK/|g" \
              -e "s|listen 80 default_server;|listen 127.0.0.1:$NGINX_PORT default_server;|" \
              -e "s|listen 8081;|listen 127.0.0.1:$internal;|" \
              -e "s|^\(\s*\)limit_req zone=|\1# limit_req zone=|" \
        >"$WORK/nginx.conf"
    grep -q "server 127.0.0.1:" "$WORK/nginx.conf" || { echo "the upstream was not substituted" >&2; exit 1; }
    nginx -p "$WORK" -c "$WORK/nginx.conf" -g "daemon off;" 2>"$WORK/nginx.stderr" &
    for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$NGINX_PORT/readyz" >/dev/null && break; sleep 0.2; done
    curl -fs "http://127.0.0.1:$NGINX_PORT/readyz" >/dev/null || { echo "nginx did not come up" >&2; cat "$WORK/nginx.stderr" "$WORK/error.log" >&2; exit 1; }
}

stop_nginx() {
    local pid
    pid=$(cat "$WORK/nginx.pid")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$WORK/nginx.pid"
}

start_nginx "${PORTS[@]}"
echo "== three instances behind nginx (http://127.0.0.1:$NGINX_PORT) =="
"$BIN" bench http --url "http://127.0.0.1:$NGINX_PORT" "${BENCH_ARGS[@]}"
stop_nginx

kill -TERM "${PIDS[1]}" "${PIDS[2]}"
start_nginx "${PORTS[0]}"
echo "== one instance behind nginx (http://127.0.0.1:$NGINX_PORT), the other two stopped =="
"$BIN" bench http --url "http://127.0.0.1:$NGINX_PORT" "${BENCH_ARGS[@]}"
stop_nginx

echo "== the same instance alone, no nginx (http://127.0.0.1:${PORTS[0]}) =="
"$BIN" bench http --url "http://127.0.0.1:${PORTS[0]}" "${BENCH_ARGS[@]}"

echo "== audit verify of the log the three runs wrote =="
DATABASE_URL=$DATABASE_URL "$BIN" audit verify
