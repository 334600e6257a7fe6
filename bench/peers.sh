#!/usr/bin/env bash
# bench peers: quorumca, step-ca and CFSSL side by side under the same fleet.
#   bench/peers.sh BINARY OUTDIR
# Installs step-ca and CFSSL through the Go module proxy at pinned versions
# (built once, a few minutes each on 2 cores, then kept under
# bench/results/bin or $BENCH_PEERS_BIN), then runs `BINARY bench peers`:
# it configures each CA under OUTDIR/peers (its PKI, ca.json or the signing
# config, its data and log), starts it on 127.0.0.1, enrolls the fleet
# against it while reading the CPU of its process, and stops it. The table
# lands in OUTDIR/peers.txt, the results in OUTDIR/peers.json and
# OUTDIR/peers-{quorumca,step-ca,cfssl}.json.
set -euo pipefail
bin=$(realpath "$1")
out=$2
here=$(dirname "$(realpath "$0")")
step_ca_version=${STEP_CA_VERSION:-v0.30.2}
cfssl_version=${CFSSL_VERSION:-v1.6.5}
cache=${BENCH_PEERS_BIN:-$here/results/bin}
mkdir -p "$out" "$cache"
out=$(realpath "$out")

# install NAME PACKAGE VERSION: builds PACKAGE@VERSION once into the cache
# and prints the binary's path. Without cgo: neither needs it for what is
# measured (CFSSL's SQLite is not used), and the builds are reproducible.
install() {
  local dir=$cache/$1-$3
  if [ ! -x "$dir/$1" ]; then
    echo "bench peers: installing $2@$3" >&2
    GOBIN=$dir CGO_ENABLED=0 "${GO:-go}" install "$2@$3" >&2
  fi
  echo "$dir/$1"
}
step_ca=$(install step-ca github.com/smallstep/certificates/cmd/step-ca "$step_ca_version")
cfssl=$(install cfssl github.com/cloudflare/cfssl/cmd/cfssl "$cfssl_version")

ceiling=()
if [ -s "$out/ceiling.json" ]; then
  ceiling=(-ceiling "$out/ceiling.json")
fi
"$bin" bench peers -step-ca "$step_ca" -cfssl "$cfssl" -dir "$out/peers" -port "${BENCH_PEERS_PORT:-19743}" \
  -duration "${BENCH_DURATION:-10s}" -concurrency "${BENCH_PEERS_CONCURRENCY:-64}" \
  -devices "${BENCH_PEERS_DEVICES:-100000}" "${ceiling[@]}" -quiet -json "$out/peers.json" | tee "$out/peers.txt"
