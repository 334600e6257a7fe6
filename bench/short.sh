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
node_pids=()
stop_dev() {
  for pid in $dev_pid "${node_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  dev_pid="" node_pids=()
}
trap stop_dev EXIT

admin=127.0.0.1:$((port + 100)) # the first node's pprof and metrics
http01=$((port + 300))          # where bench acme answers http-01 challenges

# start_dev NODES DIR: a dev CA, ready when every node answers /v1/ready.
start_dev() {
  rm -rf "$2"
  "$bin" dev -nodes "$1" -data-dir "$2" -listen "127.0.0.1:$port" -admin-listen "$admin" -acme-http01-port "$http01" >"$2.log" 2>&1 &
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
# ratio NAME OTHER [UNIT]: NAME's rate against OTHER's, in one run.
ratio() {
  awk -v a="$(rate_of "$out/$1.json")" -v b="$(rate_of "$out/$2.json")" -v n="$1" -v m="$2" -v u="${3:-certs}" \
    'BEGIN { if (b > 0) printf "%s: %.0f %s/s, %.2f of %s (%.0f certs/s)\n", n, a, u, a / b, m, b }' | tee -a "$summary"
}

if [ "${BENCH_GO:-1}" = 1 ]; then
  say "Go benchmarks"
  go test -tags "${BENCH_TAGS:-}" -run '^$' -bench . -benchtime "${BENCH_TIME:-1s}" -benchmem ./... 2>&1 |
    tee "$out/go-bench.txt" | grep -E '^(Benchmark|ok|FAIL)' | tee -a "$summary"
fi

say "ceiling"
"$bin" bench ceiling -duration 5s -json "$out/ceiling.json" | tee -a "$summary"

# budget NAME PID: while run NAME (harness PID) is in its measured phase,
# where the machine's time goes per certificate: CPU of the CA process and
# of the harness (from /proc over 4 s; certificates counted by the audit
# log, cluster-wide), the machine's idle share, and from a CPU profile of
# the next 4 s the CA's CPU that no CA can avoid (the ceiling's work: parse
# and check the CSR, x509.CreateCertificate) and the CPU spent storing and
# replicating (FSM, Raft, bolt, forwarding to the leader). Half the ceiling
# allows 2 x nproc / ceiling of CPU per certificate for all of it.
budget() {
  local name=$1 harness_pid=$2 ticks cores certs0 certs1 n0 n1 h0 h1 i0 i1 t0 t1
  ticks=$(getconf CLK_TCK)
  cores=$(nproc)
  metric() { curl -fsS "http://$admin/v1/metrics" | awk -v m="$1" 'index($0, m) == 1 { print $2 }'; }
  issued() { metric 'quorumca_operations_total{operation="issue",outcome="ok"}'; }
  cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
  idle() { awk '/^cpu / { print $5 + $6; exit }' /proc/stat; }
  total() { awk '/^cpu / { s = 0; for (i = 2; i <= NF; i++) s += $i; print s; exit }' /proc/stat; }
  local before
  before=$(issued)
  for _ in $(seq 1 600); do # until the measured phase issues
    [ "$(issued)" != "$before" ] && break
    sleep 0.1
  done
  sleep 1
  certs0=$(metric quorumca_audit_entries) n0=$(cpu "$dev_pid") h0=$(cpu "$harness_pid") i0=$(idle) t0=$(total)
  sleep 4
  certs1=$(metric quorumca_audit_entries) n1=$(cpu "$dev_pid") h1=$(cpu "$harness_pid") i1=$(idle) t1=$(total)
  curl -fsS -o "$out/$name.prof" "http://$admin/debug/pprof/profile?seconds=4"
  local share unavoidable storage
  share() { # percent of the profile's samples under functions matching $1
    go tool pprof -top -nodefraction=0 -focus "$1" "$bin" "$out/$name.prof" 2>/dev/null |
      sed -n 's/.*Showing nodes accounting for .*, \([0-9.]*\)% of .*/\1/p'
  }
  go tool pprof -top -cum "$bin" "$out/$name.prof" >"$out/$name-top.txt" 2>/dev/null || true
  unavoidable=$(share 'x509\.CreateCertificate$|x509\.ParseCertificateRequest$|CertificateRequest\)\.CheckSignature$')
  storage=$(share 'fsm\.\(\*FSM\)\.ApplyBatch$|quorumca/cluster\.|hashicorp/raft|bbolt')
  awk -v c0="$certs0" -v c1="$certs1" -v n="$((n1 - n0))" -v h="$((h1 - h0))" -v hz="$ticks" -v cores="$cores" \
    -v idle="$((i1 - i0))" -v tot="$((t1 - t0))" -v u="${unavoidable:-0}" -v s="${storage:-0}" \
    -v ceil="$(rate_of "$out/ceiling.json")" -v name="$name" 'BEGIN {
      c = c1 - c0
      if (c <= 0) { print "budget " name ": no certificates issued in the window"; exit }
      node = n / hz / c * 1000; har = h / hz / c * 1000
      printf "budget %s: %.0f certs/s; CPU per certificate: CA %.3f ms (no CA can avoid %.3f; storing and replicating %.3f; the rest %.3f), harness %.3f ms; machine idle %.0f%%; the ceiling spends %.3f ms, half the ceiling allows %.3f ms for all of it\n",
        name, c / 4, node, node * u / 100, node * s / 100, node * (100 - u - s) / 100, har, idle / tot * 100,
        cores / ceil * 1000, 2 * cores / ceil * 1000
    }' | tee -a "$summary"
}

# run NAME ARGS...: a bench run against the dev CA in $dev; with budget=1,
# budget beside it.
run() {
  local name=$1
  shift
  say "$name"
  "$bin" bench run -addr "$addrs" -ca-file "$dev/root.pem" -admin-token-file "$dev/admin.token" -quiet \
    -ceiling "$out/ceiling.json" -json "$out/$name.json" -plot "$out/$name.svg" "$@" >"$out/$name.txt" &
  local pid=$!
  if [ "${budget:-0}" = 1 ]; then
    budget "$name" "$pid"
  fi
  wait "$pid"
  tee -a "$summary" <"$out/$name.txt"
}

dev=$out/dev1
start_dev 1 "$dev"
addrs=https://127.0.0.1:$port
run enroll-1node -duration "$dur" -concurrency 64 -devices 100000
# More workers fill the commit pipeline: a higher rate at a higher latency.
budget=1 run enroll-1node-c256 -duration "$dur" -concurrency 256 -devices 100000
# Open loop at half the peak, the better of the two.
half=$(awk -v a="$(rate_of "$out/enroll-1node.json")" -v b="$(rate_of "$out/enroll-1node-c256.json")" \
  'BEGIN { r = a > b ? a : b; printf "%d", r / 2 }')
run enroll-1node-half-open -duration "$dur" -rate "$half" -concurrency 256 -devices 100000
run renew-1node-newconn -duration "$dur" -concurrency 32 -devices 5000 -renew
run renew-1node-keepalive -duration "$dur" -concurrency 32 -devices 5000 -renew -keepalive
# EST: the same enrollment, a base64 PKCS#10 in and a certs-only PKCS#7
# out, Basic credentials for the token.
run enroll-est-1node -duration "$dur" -concurrency 64 -devices 100000 -protocol est
ratio enroll-est-1node enroll-1node
# SCEP: a PKCSReq encrypted to the RA and signed by the device (RSA keys,
# which SCEP needs), the RA decrypting it and signing the reply. Its
# requests are made before the run, two RSA signatures each: fewer devices.
run enroll-scep-1node -duration "$dur" -concurrency 64 -devices 20000 -protocol scep -key-type rsa2048
ratio enroll-scep-1node enroll-1node
# Status answers: each read confirmed with the leader first (a read index).
run ocsp-1node -duration "$dur" -concurrency 64 -devices 5000 -ocsp
# ACME: whole orders (five signed requests, three commits each), beside
# the JSON API's enrollment above.
acme() {
  local name=$1
  shift
  say "$name"
  "$bin" bench acme -addr "$addrs" -ca-file "$dev/root.pem" -admin-token-file "$dev/admin.token" -quiet \
    -http01 "127.0.0.1:$http01" -ceiling "$out/ceiling.json" -json "$out/$name.json" "$@" | tee -a "$summary"
}
acme acme-1node -duration "$dur" -concurrency 64
acme acme-1node-c256 -duration "$dur" -concurrency 256
ratio acme-1node enroll-1node orders
ratio acme-1node-c256 enroll-1node-c256 orders
say "storm"
"$bin" bench storm -addr "$addrs" -ca-file "$dev/root.pem" -admin-token-file "$dev/admin.token" -quiet \
  -devices "${BENCH_STORM_DEVICES:-5000}" -window "${BENCH_STORM_WINDOW:-10s}" -json "$out/storm.json" -plot "$out/storm.svg" | tee -a "$summary" || true
stop_dev

dev=$out/dev3
start_dev 3 "$dev"
addrs=https://127.0.0.1:$port,https://127.0.0.1:$((port + 1)),https://127.0.0.1:$((port + 2))
run enroll-3nodes -duration "$dur" -concurrency 64 -devices 100000
budget=1 run enroll-3nodes-c256 -duration "$dur" -concurrency 256 -devices 100000
run ocsp-3nodes -duration "$dur" -concurrency 64 -devices 5000 -ocsp
acme acme-3nodes -duration "$dur" -concurrency 64
ratio acme-3nodes enroll-3nodes orders
stop_dev

# A follower killed under load: three dev nodes in processes of their own,
# clients on the leader and the follower that stays. The leader keeps its
# log format (batch entries) while the dead one is gone, so the rate stays
# near the healthy cluster's.
dev=$out/procs3
rm -rf "$dev"
for i in 1 2 3; do # node 1 first: it makes the PKI the others load
  "$bin" dev -nodes 3 -node "$i" -data-dir "$dev" -listen "127.0.0.1:$port" >"$dev.node$i.log" 2>&1 &
  node_pids+=($!)
  for _ in $(seq 1 600); do
    curl -fsS --cacert "$dev/root.pem" "https://127.0.0.1:$((port + i - 1))/v1/ready" >/dev/null 2>&1 && break
    kill -0 "${node_pids[$((i - 1))]}" 2>/dev/null || { cat "$dev.node$i.log"; echo "bench: dev node $i exited" >&2; exit 1; }
    sleep 0.1
  done
done
health() { curl -fsS --cacert "$dev/root.pem" "https://127.0.0.1:$1/v1/health"; }
leader=$(health "$port" | sed -n 's/.*"leader": *"node\([0-9]\)".*/\1/p')
[ -n "$leader" ] || { echo "bench: the dev nodes name no leader" >&2; exit 1; }
follower=$((leader % 3 + 1)) stays=$(((leader + 1) % 3 + 1))
addrs=https://127.0.0.1:$((port + leader - 1)),https://127.0.0.1:$((port + stays - 1))
run enroll-3procs -duration "$dur" -concurrency 64 -devices 100000
(sleep 2 && kill -9 "${node_pids[$((follower - 1))]}") &
run enroll-3procs-follower-killed -duration "$dur" -concurrency 64 -devices 100000
format=$(health "$((port + leader - 1))" | sed -n 's/.*"log_format": *\([0-9]*\).*/\1/p')
awk -v a="$(rate_of "$out/enroll-3procs.json")" -v b="$(rate_of "$out/enroll-3procs-follower-killed.json")" -v f="$format" \
  'BEGIN { printf "follower killed 2 s into the run: %.0f certs/s, healthy %.0f: %.2f of it; the leader writes log format %s\n", b, a, b / a, f }' |
  tee -a "$summary"
stop_dev

say "fsm scale (short)"
"$bin" bench fsm -records "${BENCH_FSM_RECORDS:-100000}" -revoked 10000 -quiet -json "$out/fsm.json" | tee -a "$summary"

# quorumca beside step-ca and CFSSL, the same fleet against each
# (bench/peers.sh installs them the first time); BENCH_PEERS=0 skips it.
if [ "${BENCH_PEERS:-1}" = 1 ]; then
  say "peers"
  "$(dirname "$0")/peers.sh" "$bin" "$out" | tee -a "$summary"
fi
echo "results in $out"
