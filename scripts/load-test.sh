#!/usr/bin/env bash
# Load test of the demo gateway against its backend and against nginx, on
# loopback, in one run. Not a test: a measurement to read, not to assert.
#
#   scripts/load-test.sh                 # 10 s per target, 64 connections
#   DURATION=30s CONNECTIONS=128 scripts/load-test.sh
#   LTO=0 scripts/load-test.sh           # the plain release profile (no fat LTO)
#
# It starts, on 127.0.0.1:
#   - one demo backend (the `user` service, no simulated latency, no chaos):
#     `palisade-gateway --backends-only`;
#   - the gateway (release build) proxying /api/user/* to that backend
#     through its full per-upstream stack;
#   - nginx (Debian package) as a plain reverse proxy to the same backend,
#     with upstream keep-alive and no access log;
# then runs wrk (Debian package) against (a) the backend directly, (b) the
# gateway's proxy route, (c) nginx, and prints requests/s, p50 and p99 for
# each. Two more rows split the gateway's gap to nginx: (g) the gateway's
# proxy route to an upstream with no retry, breaker or bulkhead table (its
# timeout only), and (h) `benches/examples/bare_proxy.rs` (palisade-benches):
# hyper's server and hyper-util's client laid out as the gateway lays them
# out, with nothing else; and (i) `benches/examples/in_task_proxy.rs`, the same with
# a client that drives its upstream connection from the request's own task
# instead of hyper-util's pooled client (an experiment, not the gateway's
# client: it shows what the pooled client's hand-off between tasks costs).
# Then the aggregator: six more demo backends with their default
# simulated latencies (5 to 20 ms), and wrk with fewer connections against
# (d) the gateway's GET /api/dashboard/user/{id} over them, (e) its slowest
# branch (notification, 20 ms) directly and (f) that branch through the
# gateway's proxy route: the aggregator should answer in about the time of
# its slowest branch, not the sum. It installs nginx and wrk with apt-get if
# they are missing.
#
# The gateway is built with fat LTO and one codegen unit (LTO=1, the
# default) into $CARGO_TARGET_DIR/lto, through cargo's environment overrides
# of the release profile; LTO=0 uses the workspace's release profile as it
# is.
#
# Everything shares this machine's cores (wrk included): compare the rows
# with each other, not with figures taken elsewhere. The CPU column (user +
# system time of the measured process over the run, per request) is the
# steadier comparison when other work shares the machine: for (a) it is the
# backend's, for (b) and (c) the proxy's alone.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
BACKEND_PORT=${BACKEND_PORT:-19101}
AGG_PORT=${AGG_PORT:-19111}           # six aggregator backends: AGG_PORT .. AGG_PORT+5
AGG_CONNECTIONS=${AGG_CONNECTIONS:-16}
LTO=${LTO:-1}
GATEWAY_PORT=${GATEWAY_PORT:-19080}
BARE_PORT=${BARE_PORT:-19070}
IN_TASK_PORT=${IN_TASK_PORT:-19071}
NGINX_PORT=${NGINX_PORT:-19090}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$LTO" = 1 ]; then
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/lto"
  export CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
  PROFILE="release + fat LTO, codegen-units 1"
else
  PROFILE="release (workspace profile)"
fi
BIN="$CARGO_TARGET_DIR/release/palisade-gateway"

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building the gateway: $PROFILE"
cargo build --release -p palisade-gateway --quiet
cargo build --release -p palisade-benches --example bare_proxy --example in_task_proxy --quiet
BARE_BIN="$CARGO_TARGET_DIR/release/examples/bare_proxy"
IN_TASK_BIN="$CARGO_TARGET_DIR/release/examples/in_task_proxy"

WORK=$(mktemp -d /tmp/palisade-load.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the backend -----------------------------------------------------------
cat > "$WORK/backend.toml" <<EOF
[demo]
enabled = true
[demo.backends.user]
listen = "127.0.0.1:$BACKEND_PORT"
latency_ms = 0
EOF
RUST_LOG=warn "$BIN" --config "$WORK/backend.toml" --backends-only > "$WORK/backend.out" 2>&1 &
BACKEND_PID=$!
PIDS+=($BACKEND_PID)

# --- six more backends for the aggregator, with their default latencies ----
AGG_SERVICES=(user order product review reward notification)
AGG_LATENCY=(5 12 6 15 8 20)
{
  echo "[demo]"
  echo "enabled = true"
  for i in "${!AGG_SERVICES[@]}"; do
    echo "[demo.backends.${AGG_SERVICES[$i]}]"
    echo "listen = \"127.0.0.1:$((AGG_PORT + i))\""
    echo "latency_ms = ${AGG_LATENCY[$i]}"
  done
} > "$WORK/agg-backends.toml"
RUST_LOG=warn "$BIN" --config "$WORK/agg-backends.toml" --backends-only > "$WORK/agg-backends.out" 2>&1 &
PIDS+=($!)

# --- the gateway: its full stack for the upstream --------------------------
# The upstream carries every resilience table the config format has; each
# layer the build wires into the stack runs on this path.
cat > "$WORK/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$GATEWAY_PORT"
body_limit_bytes = 1048576
drain_timeout_ms = 2000

[upstreams.user]
url = "http://127.0.0.1:$BACKEND_PORT"
timeout_ms = 2000
attempt_timeout_ms = 1000

[upstreams.user.retry]
max_attempts = 3
backoff = { kind = "exponential", base_ms = 25, multiplier = 2.0, cap_ms = 1000 }
retry_ratio = 0.2
min_retries_per_sec = 10

[upstreams.user.circuit_breaker]
count_window = 100
minimum_calls = 20
failure_rate_threshold = 50
wait_in_open_ms = 5000

[upstreams.user.bulkhead]
max_concurrent_calls = 512
max_wait_ms = 0

[[routes]]
prefix = "/api/user"
upstream = "user"

# The same backend with none of the resilience tables: the proxy route and
# the upstream's timeout only.
[upstreams.plain]
url = "http://127.0.0.1:$BACKEND_PORT"
timeout_ms = 2000

[[routes]]
prefix = "/api/plain"
upstream = "plain"
EOF
# The aggregator's upstreams (d_<service>, each with the full stack and a
# proxy route) and its six branches.
{
  for i in "${!AGG_SERVICES[@]}"; do
    s=${AGG_SERVICES[$i]}
    printf '\n[upstreams.d_%s]\nurl = "http://127.0.0.1:%s"\ntimeout_ms = 2000\nattempt_timeout_ms = 1000\n' "$s" "$((AGG_PORT + i))"
    printf '[upstreams.d_%s.retry]\nmax_attempts = 3\n' "$s"
    printf '[upstreams.d_%s.circuit_breaker]\ncount_window = 100\nminimum_calls = 20\n' "$s"
    printf '[upstreams.d_%s.bulkhead]\nmax_concurrent_calls = 512\n' "$s"
    printf '[[routes]]\nprefix = "/api/d_%s"\nupstream = "d_%s"\n' "$s" "$s"
  done
  printf '\n[aggregator]\ndeadline_ms = 1500\n'
  paths=("/users/{id}" "/users/{id}/orders" "/users/{id}/recommendations" "/users/{id}/reviews" "/users/{id}/rewards" "/users/{id}/notifications")
  for i in "${!AGG_SERVICES[@]}"; do
    s=${AGG_SERVICES[$i]}
    required=false
    if [ "$s" = user ] || [ "$s" = order ]; then required=true; fi
    printf '[[aggregator.branches]]\nname = "%s"\nupstream = "d_%s"\npath = "%s"\nrequired = %s\ntimeout_ms = 1000\n' "$s" "$s" "${paths[$i]}" "$required"
  done
} >> "$WORK/gateway.toml"
RUST_LOG=warn "$BIN" --config "$WORK/gateway.toml" > "$WORK/gateway.out" 2>&1 &
GATEWAY_PID=$!
PIDS+=($GATEWAY_PID)

# --- nginx as a plain reverse proxy ----------------------------------------
mkdir -p "$WORK/nginx"
USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"
cat > "$WORK/nginx/nginx.conf" <<EOF
$USER_LINE
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' > "$WORK/nginx.out" 2>&1 &
NGINX_PID=$!
PIDS+=($NGINX_PID)

# --- hyper and hyper-util alone ----------------------------------------------
"$BARE_BIN" "127.0.0.1:$BARE_PORT" "127.0.0.1:$BACKEND_PORT" > "$WORK/bare.out" 2>&1 &
BARE_PID=$!
PIDS+=($BARE_PID)
"$IN_TASK_BIN" "127.0.0.1:$IN_TASK_PORT" "127.0.0.1:$BACKEND_PORT" > "$WORK/in-task.out" 2>&1 &
IN_TASK_PID=$!
PIDS+=($IN_TASK_PID)

# --- wait for them all -------------------------------------------------------
wait_for() {
  local url=$1 name=$2
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $name did not answer at $url" >&2
  cat "$WORK"/*.out "$WORK"/nginx/error.log 2>/dev/null >&2 || true
  exit 1
}
DIRECT="http://127.0.0.1:$BACKEND_PORT/users/42"
GATEWAY="http://127.0.0.1:$GATEWAY_PORT/api/user/users/42"
VIA_NGINX="http://127.0.0.1:$NGINX_PORT/users/42"
PLAIN="http://127.0.0.1:$GATEWAY_PORT/api/plain/users/42"
BARE="http://127.0.0.1:$BARE_PORT/users/42"
IN_TASK="http://127.0.0.1:$IN_TASK_PORT/users/42"
wait_for "$DIRECT" backend
wait_for "$GATEWAY" gateway
wait_for "$VIA_NGINX" nginx
wait_for "$PLAIN" "the gateway's plain route"
wait_for "$BARE" "the bare proxy"
wait_for "$IN_TASK" "the in-task proxy"
[ "$(curl -fsS "$GATEWAY")" = "$(curl -fsS "$DIRECT")" ] || { echo "error: the gateway's answer differs from the backend's" >&2; exit 1; }
AGGREGATE="http://127.0.0.1:$GATEWAY_PORT/api/dashboard/user/42"
SLOWEST="http://127.0.0.1:$((AGG_PORT + 5))/users/42/notifications"
SLOWEST_VIA="http://127.0.0.1:$GATEWAY_PORT/api/d_notification/users/42/notifications"
wait_for "$SLOWEST" "the aggregator's backends"
wait_for "$AGGREGATE" "the aggregator"
curl -fsS -D - -o /dev/null "$AGGREGATE" | grep -qi '^x-palisade-completed: true' || { echo "error: the aggregator's answer is not complete" >&2; exit 1; }

# --- measure ---------------------------------------------------------------
# wrk's latency distribution prints "50%" and "99%" lines; convert to ms.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.2f", n }'
}
# CPU time (user + system, clock ticks) used so far by the given processes
# and their threads; nginx's workers are the master's children.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
proxy_pids() {
  case $1 in
    backend) echo "$BACKEND_PID" ;;
    gateway) echo "$GATEWAY_PID" ;;
    nginx) echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')" ;;
    bare) echo "$BARE_PID" ;;
    in-task) echo "$IN_TASK_PID" ;;
    none) echo "" ;;
  esac
}
HZ=$(getconf CLK_TCK)
ROWS=()
measure() {
  local label=$1 url=$2 who=$3 conns=${4:-$CONNECTIONS}
  wrk -t"$THREADS" -c"$conns" -d"$WARMUP" "$url" > /dev/null
  local out before after
  # shellcheck disable=SC2046
  before=$(cpu_ticks $(proxy_pids "$who"))
  out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "$url")
  # shellcheck disable=SC2046
  after=$(cpu_ticks $(proxy_pids "$who"))
  echo "$out" > "$WORK/wrk-${label//[^a-z]/_}.txt"
  local rps p50 p99 non2xx errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
  local requests cpu_us
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu_us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$requests" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
  ROWS+=("$(printf '| %-34s | %12s | %9s | %9s | %12s | %7s |' "$label" "$rps" "$p50" "$p99" "$cpu_us" "${non2xx:-0}/${errors:-0}")")
  printf '  %-34s %12s req/s  p50 %s ms  p99 %s ms  %s us CPU/request (%s)\n' "$label" "$rps" "$p50" "$p99" "$cpu_us" "$who"
}

echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after a $WARMUP warm-up each), GET /users/42"
measure "(a) backend direct" "$DIRECT" backend
measure "(b) gateway /api/user (stack)" "$GATEWAY" gateway
measure "(c) nginx reverse proxy" "$VIA_NGINX" nginx
measure "(g) gateway, no resilience layers" "$PLAIN" gateway
measure "(h) bare hyper + hyper-util proxy" "$BARE" bare
measure "(i) bare hyper, in-task client" "$IN_TASK" in-task

echo "== the aggregator: wrk -t$THREADS -c$AGG_CONNECTIONS -d$DURATION, six backends of 5 to 20 ms"
measure "(d) gateway aggregator" "$AGGREGATE" gateway "$AGG_CONNECTIONS"
measure "(e) slowest branch direct" "$SLOWEST" none "$AGG_CONNECTIONS"
measure "(f) slowest branch via gateway" "$SLOWEST_VIA" gateway "$AGG_CONNECTIONS"

echo
echo "| target | requests/s | p50 (ms) | p99 (ms) | CPU µs/request (a: backend; b, c, g, h, i: the proxy alone) | non-2xx/socket errors |"
echo "|---|---:|---:|---:|---:|---:|"
for row in "${ROWS[@]}"; do echo "$row"; done
echo
echo "build: $PROFILE; (d) to (f): CPU per request of the gateway only"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "versions: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $("$BIN" --version)"
