#!/usr/bin/env bash
# Three quorumca servers set up by hand, without gossip or KMS, exactly as
# README.md's "Setting up servers by hand" says, on one machine: openssl
# makes the keys and certificates, three HCL files, three `quorumca server`
# processes on 127.0.0.1; then a certificate through a follower, a listing
# paged with next_cursor, and a clean stop. Needs openssl and curl; make
# test runs it (TestServersByHand).
#
#   make build && deploy/by-hand.sh
#   QUORUMCA=bin/quorumca BASE_PORT=18443 WORK=/tmp/by-hand deploy/by-hand.sh
#
# Node N (1-3) listens on BASE_PORT+N-1 (API), +1000 (Raft), +2000 (HTTP).
# WORK/etc stands for /etc/quorumca, WORK/ca-N for /var/lib/quorumca.
set -euo pipefail

QUORUMCA=$(realpath "${QUORUMCA:-bin/quorumca}")
BASE_PORT=${BASE_PORT:-18443}
WORK=$(realpath "${WORK:-$(mktemp -d)}")
ETC=$WORK/etc
mkdir -p "$ETC"
cd "$ETC"

api_port() { echo $((BASE_PORT + $1 - 1)); }
api() { echo "https://127.0.0.1:$(api_port "$1")"; }
# field NAME: each string value of NAME in the API's JSON on stdin (it puts
# one field on a line); pem: the "certificate" field as a PEM file.
field() { awk -F'"' -v k="$1" '$2 == k {print $4}'; }
pem() { awk -F'"' '$2 == "certificate" {gsub(/\\n/, "\n", $4); printf "%s", $4}'; }
# wait_for WHAT COMMAND...: until COMMAND succeeds, for 30 s at most.
wait_for() {
	local what=$1 deadline=$((SECONDS + 30))
	shift
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS > deadline)); then
			echo "by-hand: timed out waiting for $what" >&2
			tail -n 20 "$WORK"/ca-*.log >&2 || true
			exit 1
		fi
		sleep 0.2
	done
}

# 1. Keys and certificates (README: the openssl commands, as written).
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem \
	-days 3650 -subj "/CN=Example Root CA" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout intermediate.key -out intermediate.csr \
	-subj "/CN=Example Issuing CA" 2>/dev/null
printf '%s\n' 'basicConstraints = critical, CA:TRUE, pathlen:0' 'keyUsage = critical, keyCertSign, cRLSign' \
	'subjectKeyIdentifier = hash' 'authorityKeyIdentifier = keyid' >intermediate.ext
openssl x509 -req -in intermediate.csr -CA root.pem -CAkey root.key -set_serial "0x$(openssl rand -hex 16)" \
	-days 1825 -extfile intermediate.ext -out intermediate.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cluster-ca.key
openssl rand -hex 32 >join.secret
for N in 1 2 3; do
	NAMES="DNS:localhost, IP:127.0.0.1" # every name and address clients use for node N
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "ca-$N-tls.key" -out "ca-$N-tls.csr" \
		-subj "/CN=ca-$N" 2>/dev/null
	printf '%s\n' 'basicConstraints = critical, CA:FALSE' 'keyUsage = critical, digitalSignature' \
		'extendedKeyUsage = serverAuth' "subjectAltName = $NAMES" >"ca-$N-tls.ext"
	openssl x509 -req -in "ca-$N-tls.csr" -CA root.pem -CAkey root.key -set_serial "0x$(openssl rand -hex 16)" \
		-days 365 -extfile "ca-$N-tls.ext" -out "ca-$N-tls.pem" 2>/dev/null
done
chmod 0600 ./*.key join.secret

# 2. One config per node: node 1 bootstraps, the others join it.
for N in 1 2 3; do
	ROLE='join             = ["'"$(api 1)"'"]'
	if [ "$N" = 1 ]; then ROLE='bootstrap        = true'; fi
	cat >"ca-$N.hcl" <<EOF
node_name = "ca-$N"
data_dir  = "$WORK/ca-$N"
api {
  listen        = "127.0.0.1:$(api_port "$N")"
  tls_cert_file = "$ETC/ca-$N-tls.pem"
  tls_key_file  = "$ETC/ca-$N-tls.key"
}
http { listen = "127.0.0.1:$(($(api_port "$N") + 2000))" }
raft { listen = "127.0.0.1:$(($(api_port "$N") + 1000))" }
cluster {
  $ROLE
  join_secret_file = "$ETC/join.secret"
  ca_key           = "softkey:$ETC/cluster-ca.key"
}
authority "default" {
  root_file  = "$ETC/root.pem"
  chain_file = "$ETC/intermediate.pem"
  key        = "softkey:$ETC/intermediate.key"
  base_url   = "http://127.0.0.1:$(($(api_port 1) + 2000))"
}
allow_insecure_soft_signer = true
bootstrap_admin_token_file = "$WORK/admin.token"
EOF
done

# 3. Three servers, node 1 first; each ready once /v1/ready says so.
pids=()
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait
}
trap stop_all EXIT
for N in 1 2 3; do
	"$QUORUMCA" server -config "$ETC/ca-$N.hcl" -log-level warn >"$WORK/ca-$N.log" 2>&1 &
	pids+=($!)
	if [ "$N" = 1 ]; then wait_for "the bootstrap admin token" test -s "$WORK/admin.token"; fi
done
for N in 1 2 3; do
	wait_for "node $N to be ready" curl -fsS --cacert root.pem "$(api "$N")/v1/ready"
done
"$QUORUMCA" operator raft list-peers -addr "$(api 1)" -ca-file root.pem -admin-token-file "$WORK/admin.token"

# 4. Certificates through a follower.
FOLLOWER=
for N in 1 2 3; do
	if [ "$(curl -fsS --cacert root.pem "$(api "$N")/v1/health" | field raft_state)" = Follower ]; then FOLLOWER=$(api "$N"); fi
done
[ -n "$FOLLOWER" ] || { echo "by-hand: no follower" >&2; exit 1; }
ADMIN=$(cat "$WORK/admin.token")
ISSUED=()
for i in 1 2 3; do
	TOKEN=$(curl -fsS --cacert root.pem -H "Authorization: Bearer $ADMIN" -d '{"sans": ["device'"$i"'.example"]}' \
		"$FOLLOWER/v1/admin/tokens" | field token)
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "device$i.key" -out "device$i.csr" \
		-subj "/CN=device$i.example" 2>/dev/null
	curl -fsS --cacert root.pem -d '{"token": "'"$TOKEN"'", "csr": "'"$(awk '{printf "%s\\n", $0}' "device$i.csr")"'"}' \
		"$FOLLOWER/v1/sign" >"device$i.json"
	pem <"device$i.json" >"device$i.pem"
	openssl verify -CAfile root.pem -untrusted intermediate.pem "device$i.pem"
	ISSUED+=("$(field serial <"device$i.json")")
done

# 5. The listing, two to a page, following next_cursor until it is "".
CURSOR= PAGES=0 LISTED=
while :; do
	curl -fsS --cacert root.pem -H "Authorization: Bearer $ADMIN" "$FOLLOWER/v1/admin/certs?limit=2&cursor=$CURSOR" >page.json
	LISTED="$LISTED $(field serial <page.json | tr '\n' ' ')"
	PAGES=$((PAGES + 1))
	CURSOR=$(field next_cursor <page.json)
	[ -n "$CURSOR" ] || break
done
for s in "${ISSUED[@]}"; do
	case " $LISTED " in *" $s "*) ;; *) echo "by-hand: $s is not listed ($LISTED)" >&2; exit 1 ;; esac
done
[ "$PAGES" = 2 ] || { echo "by-hand: $PAGES pages for three certificates, two to a page" >&2; exit 1; }

# 6. A clean stop: SIGTERM, and every server exits 0.
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do
	if ! wait "$p"; then echo "by-hand: a server did not stop cleanly" >&2; exit 1; fi
done
pids=()
echo "by-hand: OK (three servers, ${#ISSUED[@]} certificates through a follower, $PAGES pages)"
