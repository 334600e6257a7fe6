#!/usr/bin/env bash
# make bench: a short version of every benchmark, results in one folder.
#   bench/short.sh BINARY OUTDIR
# Figures from one run are comparable with each other (the ceiling is
# measured in the same run); compare ratios, not figures, across machines.
set -euo pipefail
bin=$(realpath "$1")
out=$2
port=${BENCH_PORT:-19443}
dur=${BENCH_DURATION:-10s}
mkdir -p "$out"
out=$(realpath "$out")
summary=$out/summary.txt
: >"$summary"
say() { echo "== $*" | tee -a "$summary"; }

dev_pid=""
stop_dev() {
  if [ -n "$dev_pid" ]; then
    kill "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
    dev_pid=""
  fi
}
trap stop_dev EXIT

# start_dev NODES DIR: a dev CA, ready when every node answers /v1/ready.
start_dev() {
  rm -rf "$2"
  "$bin" dev -nodes "$1" -data-dir "$2" -listen "127.0.0.1:$port" >"$2.log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 600); do
    if [ -s "$2/admin.token" ] && [ -s "$2/root.pem" ]; then
      local ok=1
      for i in $(seq 0 $(($1 - 1))); do
        curl -fsS --cacert "$2/root.pem" "https://127.0.0.1:$((port + i))/v1/ready" >/dev/null 2>&1 || ok=0
      done
      [ $ok = 1 ] && return 0
    fi
    kill -0 "$dev_pid" 2>/dev/null || { cat "$2.log"; echo "bench: dev CA exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: dev CA not ready after 60s" >&2
  exit 1
}

rate_of() { sed -n 's/^  "certs_per_second": \([0-9.]*\),*$/\1/p' "$1" | head -1; }

if [ "${BENCH_GO:-1}" = 1 ]; then
  say "Go benchmarks"
  go test -tags "${BENCH_TAGS:-}" -run '^$' -bench . -benchtime "${BENCH_TIME:-1s}" -benchmem ./... 2>&1 |
    tee "$out/go-bench.txt" | grep -E '^(Benchmark|ok|FAIL)' | tee -a "$summary"
fi

say "ceiling"
"$bin" bench ceiling -duration 5s -json "$out/ceiling.json" | tee -a "$summary"
run() { # NAME ARGS...: a bench run against the dev CA in $dev
  local name=$1
  shift
  say "$name"
  "$bin" bench run -addr "$addrs" -ca-file "$dev/root.pem" -admin-token "$dev/admin.token" -quiet \
    -ceiling "$out/ceiling.json" -json "$out/$name.json" -plot "$out/$name.svg" "$@" | tee -a "$summary"
}

dev=$out/dev1
start_dev 1 "$dev"
addrs=https://127.0.0.1:$port
run enroll-1node -duration "$dur" -concurrency 64 -devices 100000
# More workers fill the commit pipeline: a higher rate at a higher latency.
run enroll-1node-c256 -duration "$dur" -concurrency 256 -devices 100000
# Open loop at half the peak, the better of the two.
half=$(awk -v a="$(rate_of "$out/enroll-1node.json")" -v b="$(rate_of "$out/enroll-1node-c256.json")" \
  'BEGIN { r = a > b ? a : b; printf "%d", r / 2 }')
run enroll-1node-half-open -duration "$dur" -rate "$half" -concurrency 256 -devices 100000
run renew-1node-newconn -duration "$dur" -concurrency 32 -devices 5000 -renew
run renew-1node-keepalive -duration "$dur" -concurrency 32 -devices 5000 -renew -keepalive
say "storm"
"$bin" bench storm -addr "$addrs" -ca-file "$dev/root.pem" -admin-token "$dev/admin.token" -quiet \
  -devices "${BENCH_STORM_DEVICES:-5000}" -window "${BENCH_STORM_WINDOW:-10s}" -json "$out/storm.json" -plot "$out/storm.svg" | tee -a "$summary" || true
stop_dev

dev=$out/dev3
start_dev 3 "$dev"
addrs=https://127.0.0.1:$port,https://127.0.0.1:$((port + 1)),https://127.0.0.1:$((port + 2))
run enroll-3nodes -duration "$dur" -concurrency 64 -devices 100000
run enroll-3nodes-c256 -duration "$dur" -concurrency 256 -devices 100000
stop_dev

say "fsm scale (short)"
"$bin" bench fsm -records "${BENCH_FSM_RECORDS:-100000}" -revoked 10000 -quiet -json "$out/fsm.json" | tee -a "$summary"
echo "results in $out"
