#!/usr/bin/env bash
# The compose cluster of deploy/compose.yaml: three nodes that form one
# cluster through gossip, HAProxy in front, keys in local-kms.
#
#   deploy/compose.sh setup   write TLS certificates, node configs, the gossip
#                             key, the join secret and the KMS seed into
#                             bin/compose (kept when present)
#   deploy/compose.sh up      setup, then start local-kms, the nodes (once
#                             local-kms listens) and HAProxy; create the
#                             authority with keys made inside KMS; wait until
#                             HAProxy has every node UP
#   deploy/compose.sh down    stop and remove containers, network and volumes
#
# The images must exist: make compose-images (make compose-up runs both).
# After `up`, bin/compose holds tls-root.pem (verifies the API) and
# admin.token (the bootstrap admin token):
#   export QUORUMCA_ADDR=https://127.0.0.1:8443 QUORUMCA_CA_FILE=bin/compose/tls-root.pem \
#          QUORUMCA_ADMIN_TOKEN_FILE=bin/compose/admin.token
#   bin/quorumca token create -sans dev1.example
#
# The cluster CA key is seeded into local-kms from a key made here: nodes
# need it before any cluster exists. The authority's root and issuing keys
# are created inside KMS and never leave it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/bin/compose"
compose=(docker-compose -f "$root/deploy/compose.yaml" -p quorumca)
https_port=${QUORUMCA_HTTPS_PORT:-8443}
http_port=${QUORUMCA_HTTP_PORT:-8080}
stats_port=${QUORUMCA_STATS_PORT:-8404}
subnet=${QUORUMCA_SUBNET:-172.29.213.0/24}
nodes=(ca1 ca2 ca3)
region=eu-west-2
kms_uri() { echo "awskms:alias/$1?endpoint=http://kms:8080&region=$region"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
token_node="" # the node that wrote the bootstrap admin token

die() {
	echo "compose.sh: $*" >&2
	exit 1
}

need() {
	local missing=()
	for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
	[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (Debian: apt-get install docker.io docker-compose curl openssl)"
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every half second.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		[ $SECONDS -lt $deadline ] || die "timed out after ${secs}s waiting for $what"
		sleep 0.5
	done
}

setup() {
	need openssl
	mkdir -p "$dir"
	chmod 700 "$dir" # the files below are readable inside the containers only through their mounts
	if [ ! -s "$dir/tls-root.pem" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
			-subj "/CN=quorumca compose API root" -keyout "$dir/tls-root.key" -out "$dir/tls-root.pem" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
		chmod 600 "$dir/tls-root.key"
	fi
	[ -s "$dir/gossip.key" ] || openssl rand -base64 32 >"$dir/gossip.key"
	[ -s "$dir/join.secret" ] || openssl rand -hex 32 >"$dir/join.secret"
	if [ ! -s "$dir/kms/seed.yaml" ]; then
		mkdir -p "$dir/kms"
		local id
		id=$(cat /proc/sys/kernel/random/uuid)
		openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/cluster.key"
		{
			printf 'Keys:\n  Asymmetric:\n    Ecc:\n      - Metadata:\n          KeyId: %s\n' "$id"
			printf '          KeyUsage: SIGN_VERIFY\n          Description: quorumca cluster CA (node mutual TLS)\n'
			printf '        PrivateKeyPem: |\n'
			sed 's/^/          /' "$tmp/cluster.key"
			printf 'Aliases:\n  - AliasName: alias/quorumca-cluster\n    TargetKeyId: %s\n' "$id"
		} >"$dir/kms/seed.yaml"
	fi
	chmod 755 "$dir/kms"
	chmod 644 "$dir/kms/seed.yaml"
	for n in "${nodes[@]}"; do
		local d="$dir/$n"
		mkdir -p "$d"
		if [ ! -s "$d/tls.pem" ]; then
			openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$n" \
				-keyout "$d/tls.key" -out "$tmp/$n.csr" 2>/dev/null
			printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$n" >"$tmp/$n.ext"
			openssl x509 -req -in "$tmp/$n.csr" -CA "$dir/tls-root.pem" -CAkey "$dir/tls-root.key" -set_serial "0x$(openssl rand -hex 16)" \
				-days 825 -extfile "$tmp/$n.ext" -out "$d/tls.pem" 2>/dev/null
		fi
		cp "$dir/tls-root.pem" "$dir/gossip.key" "$dir/join.secret" "$d/"
		node_config "$n" >"$d/node.hcl"
		# The service user (65532) reads them through the read-only mount.
		chmod 755 "$d"
		chmod 644 "$d"/*
	done
}

node_config() {
	cat <<EOF
# Written by deploy/compose.sh for the compose cluster; see deploy/node.hcl.
node_name = "$1"
data_dir  = "/var/lib/quorumca"

api {
  listen              = "0.0.0.0:8443"
  advertise           = "$1:8443"
  # Token audiences: the balancer as the host sees it, and this node.
  public_urls         = ["https://127.0.0.1:$https_port", "https://localhost:$https_port", "https://$1:8443"]
  tls_cert_file       = "/etc/quorumca/tls.pem"
  tls_key_file        = "/etc/quorumca/tls.key"
  proxy_protocol_from = ["$subnet"]
}

http {
  listen = "0.0.0.0:8080"
}

raft {
  listen    = "0.0.0.0:8300"
  advertise = "$1:8300"
}

gossip {
  listen     = "0.0.0.0:8301"
  key_file   = "/etc/quorumca/gossip.key"
  retry_join = [$(printf '"%s:8301", ' "${nodes[@]}" | sed 's/, $//')]
}

cluster {
  bootstrap_expect = ${#nodes[@]}
  join_secret_file = "/etc/quorumca/join.secret"
  ca_key           = "$(kms_uri quorumca-cluster)"
}
EOF
}

kms_listening() { "${compose[@]}" logs kms 2>/dev/null | grep -q "Local KMS started"; }

# fetch_admin_token copies the bootstrap admin token from whichever node
# wrote it (the first leader) into bin/compose/admin.token.
fetch_admin_token() {
	local n cid
	for n in "${nodes[@]}"; do
		cid=$("${compose[@]}" ps -q "$n")
		[ -n "$cid" ] || continue
		if docker cp "$cid:/var/lib/quorumca/bootstrap-admin.token" - 2>/dev/null | tar -xO >"$dir/admin.token.new" 2>/dev/null &&
			[ -s "$dir/admin.token.new" ]; then
			chmod 600 "$dir/admin.token.new"
			mv "$dir/admin.token.new" "$dir/admin.token"
			token_node=$n
			return 0
		fi
	done
	rm -f "$dir/admin.token.new"
	return 1
}

# in_token_node ARGS...: runs quorumca ARGS inside the node that holds the
# bootstrap admin token, against its own API (the balancer sends nothing to
# a cluster without an authority: no node is ready).
in_token_node() {
	"${compose[@]}" exec -T "$token_node" /usr/local/bin/quorumca "$@" -addr "https://$token_node:8443" \
		-ca-file /etc/quorumca/tls-root.pem -admin-token-file /var/lib/quorumca/bootstrap-admin.token
}

# lb_up: HAProxy reports every node UP for the API.
lb_up() {
	local up
	up=$(curl -fsS "http://127.0.0.1:$stats_port/stats;csv" 2>/dev/null |
		awk -F, '$1 == "api" && $2 ~ /^ca[0-9]+$/ && $18 ~ /^UP/ { n++ } END { print n + 0 }')
	[ "$up" -eq ${#nodes[@]} ]
}

up() {
	need docker docker-compose curl openssl
	for image in quorumca:local quorumca-haproxy:local quorumca-local-kms:local; do
		docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing: run make compose-images"
	done
	setup
	export QUORUMCA_HTTPS_PORT=$https_port QUORUMCA_HTTP_PORT=$http_port QUORUMCA_STATS_PORT=$stats_port QUORUMCA_SUBNET=$subnet
	# A node that cannot reach the cluster CA key when it starts asks the
	# others for a node certificate: local-kms must answer first.
	"${compose[@]}" up -d kms
	wait_for 60 "local-kms to listen" kms_listening
	"${compose[@]}" up -d "${nodes[@]}"
	wait_for 120 "the nodes to form a cluster and write the bootstrap admin token" fetch_admin_token
	local authorities
	authorities=$(in_token_node operator authority list)
	if ! grep -q '^default[[:space:]]' <<<"$authorities"; then
		in_token_node operator authority create -name default -create-keys \
			-root-key "$(kms_uri quorumca-root)" -key "$(kms_uri quorumca-issuing)" \
			-base-url "http://127.0.0.1:$http_port"
	fi
	"${compose[@]}" up -d lb
	wait_for 120 "HAProxy to see every node UP (stats: http://127.0.0.1:$stats_port/stats)" lb_up
	cat <<EOF
quorumca compose cluster ready:
  API (through HAProxy)  https://127.0.0.1:$https_port   verify with $dir/tls-root.pem
  CRL and OCSP           http://127.0.0.1:$http_port/v1/crl, http://127.0.0.1:$http_port/v1/ocsp
  HAProxy stats          http://127.0.0.1:$stats_port/stats
  Admin token            $dir/admin.token
  export QUORUMCA_ADDR=https://127.0.0.1:$https_port QUORUMCA_CA_FILE=$dir/tls-root.pem QUORUMCA_ADMIN_TOKEN_FILE=$dir/admin.token
EOF
}

down() {
	need docker-compose
	"${compose[@]}" down -v --remove-orphans
}

case "${1:-}" in
setup) setup ;;
up) up ;;
down) down ;;
*)
	echo "usage: $0 setup|up|down" >&2
	exit 2
	;;
esac
