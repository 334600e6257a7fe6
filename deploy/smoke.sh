#!/usr/bin/env bash
# Smoke test of the compose deployment (deploy/compose.yaml), through
# HAProxy only, as an admin and a device see it:
#   1. deploy/compose.sh up: local-kms, three nodes that form one cluster by
#      gossip, the authority created with its keys in KMS, HAProxy with every
#      node UP (polled from its stats, no fixed sleeps);
#   2. an admin mints an enrollment token (admin API: quorumca token create);
#   3. a device enrolls with openssl and curl (POST /v1/sign); openssl
#      verifies the certificate against the authority's root and issuer; the
#      token then refuses another key;
#   4. it renews over mutual TLS (its certificate in the handshake, no token):
#      HAProxy passes TLS through to a node;
#   5. the audit entry of the enrollment names the device's address, not
#      HAProxy's (PROXY protocol);
#   6. the admin revokes the renewed certificate; OCSP at once and the CRL
#      within its interval, over
#      HAProxy's plain-HTTP frontend, report it revoked, and renewing with it
#      is refused.
# It replaces a compose cluster that is already running (same project), and
# removes its own at the end, whatever happened. Run by
# `make compose-smoke`, which builds the images first. Needs docker,
# docker-compose, haproxy (for its image), curl and openssl.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS

fail() {
	echo "smoke: FAIL: $*" >&2
	exit 1
}

missing=()
for t in docker docker-compose curl openssl; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
[ -x "${HAPROXY:-/usr/sbin/haproxy}" ] || missing+=(haproxy)
[ ${#missing[@]} -eq 0 ] || fail "missing: ${missing[*]} (Debian: apt-get install docker.io docker-compose haproxy curl openssl)"
docker info >/dev/null 2>&1 || fail "docker is installed but its daemon does not answer (docker info)"
[ -x "$root/bin/quorumca" ] || fail "bin/quorumca is missing: run make compose-smoke (it builds the images and the binary)"

compose=(docker-compose -f "$root/deploy/compose.yaml" -p quorumca)
work=$(mktemp -d)
finish() {
	local status=$?
	if [ $status -ne 0 ]; then
		echo "smoke: logs of the failed run:" >&2
		"${compose[@]}" logs --no-color --tail=40 >&2 || true
	fi
	"$root/deploy/compose.sh" down >/dev/null 2>&1 || echo "smoke: compose down failed" >&2
	rm -rf "$work"
	if [ $status -eq 0 ]; then
		echo "smoke: PASS in $((SECONDS - started))s"
	else
		echo "smoke: FAIL after $((SECONDS - started))s" >&2
	fi
	exit $status
}
trap finish EXIT

# A cluster left over by an interrupted run would keep its old keys.
"$root/deploy/compose.sh" down >/dev/null 2>&1 || true
"$root/deploy/compose.sh" up
echo "smoke: cluster up after $((SECONDS - started))s"

api="https://127.0.0.1:${QUORUMCA_HTTPS_PORT:-8443}"
plain="http://127.0.0.1:${QUORUMCA_HTTP_PORT:-8080}"
export QUORUMCA_ADDR=$api QUORUMCA_CA_FILE="$root/bin/compose/tls-root.pem" QUORUMCA_ADMIN_TOKEN_FILE="$root/bin/compose/admin.token"
qca() { "$root/bin/quorumca" "$@"; }
# curl through HAProxy, verifying the nodes' API certificates.
tcurl() { curl -sS --fail-with-body --cacert "$QUORUMCA_CA_FILE" "$@"; }
# json_str KEY: the string value of "KEY" in a pretty-printed JSON document.
json_str() { awk -v k="\"$1\":" '$1 == k { sub(/^[^:]*: "/, ""); sub(/",?$/, ""); gsub(/\\n/, "\n"); printf "%s", $0; exit }'; }
# pems: every PEM certificate in a JSON document.
pems() { grep -o '"-----BEGIN CERTIFICATE-----[^"]*"' | sed -e 's/^"//' -e 's/"$//' | awk '{ gsub(/\\n/, "\n"); printf "%s", $0 }'; }
cd "$work"

# 2. An admin mints a single-use enrollment token.
qca token create -sans smoke.example -ttl 10m -out token.txt
token=$(cat token.txt)
[ -n "$token" ] || fail "no token minted"

# 3. The device makes its key and CSR and trades them, with the token, for a certificate.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key \
	-subj /CN=smoke.example -out device.csr 2>/dev/null
tcurl -d "{\"token\": \"$token\", \"csr\": \"$(awk '{ printf "%s\\n", $0 }' device.csr)\"}" "$api/v1/sign" >sign.json ||
	fail "enrollment: $(cat sign.json)"
json_str certificate <sign.json >device.pem
serial=$(json_str serial <sign.json)
tcurl "$api/v1/authorities/default/roots" | pems >roots.pem
curl -sS --fail "$plain/v1/authorities/default/issuer.crt" | openssl x509 -inform DER -out issuer.pem
openssl verify -CAfile roots.pem -untrusted issuer.pem device.pem >/dev/null || fail "enrolled certificate does not verify"
echo "smoke: enrolled $serial"

# A token works once: another key is refused (the same request again would
# get the same certificate back: a device whose answer was lost retries).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
	-subj /CN=smoke.example -out other.csr 2>/dev/null
if tcurl -d "{\"token\": \"$token\", \"csr\": \"$(awk '{ printf "%s\\n", $0 }' other.csr)\"}" "$api/v1/sign" >reuse.json 2>/dev/null; then
	fail "a used token was accepted for another key"
fi
grep -q token_used reuse.json || fail "reusing the token: $(cat reuse.json)"

# 4. Renewal over mutual TLS, through HAProxy's TCP passthrough.
tcurl --cert device.pem --key device.key -X POST "$api/v1/renew" >renew.json || fail "renewal: $(cat renew.json)"
json_str certificate <renew.json >renewed.pem
renewed=$(json_str serial <renew.json)
[ -n "$renewed" ] && [ "$renewed" != "$serial" ] || fail "renewal returned serial '$renewed' (enrolled: $serial)"
[ "$(json_str renewed_from <renew.json)" = "$serial" ] || fail "renewal does not name what it renewed: $(cat renew.json)"
openssl verify -CAfile roots.pem -untrusted issuer.pem renewed.pem >/dev/null || fail "renewed certificate does not verify"
echo "smoke: renewed into $renewed"

# 5. The nodes saw the device's address through the PROXY protocol header.
lb_ip=$(docker inspect "$("${compose[@]}" ps -q lb)" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
remote=$(qca audit list -format json | awk -v s="serial=$serial " '/"remote":/ { r = $2 } index($0, s) { gsub(/[",]/, "", r); print r; exit }')
[ -n "$remote" ] || fail "no audit entry for $serial"
[ "$remote" != "$lb_ip" ] || fail "the audit log shows HAProxy's address $lb_ip, not the device's"
echo "smoke: audit shows the device at $remote (HAProxy is $lb_ip)"

# 6. Revocation, seen by OCSP and the CRL through the balancer.
qca cert revoke "$renewed" -reason keyCompromise >/dev/null
ocsp=$(openssl ocsp -issuer issuer.pem -cert renewed.pem -url "$plain/v1/ocsp" -CAfile roots.pem -no_nonce 2>&1) ||
	fail "openssl ocsp: $ocsp"
grep -q 'renewed.pem: revoked' <<<"$ocsp" || fail "OCSP does not report the certificate revoked: $ocsp"
grep -q 'Response verify OK' <<<"$ocsp" || fail "OCSP response does not verify: $ocsp"
# The leader re-signs the CRL within its interval (5 s by default).
listed=""
for _ in $(seq 1 40); do
	curl -sS --fail "$plain/v1/crl" -o crl.der
	crl=$(openssl crl -inform DER -in crl.der -CAfile issuer.pem -noout 2>&1) || fail "openssl crl: $crl"
	grep -q 'verify OK' <<<"$crl" || fail "the CRL's signature does not verify: $crl"
	crl=$(openssl crl -inform DER -in crl.der -noout -text)
	if grep -qi "Serial Number: 0*$(sed 's/^0*//' <<<"$renewed")\$" <<<"$crl"; then
		listed=1
		break
	fi
	sleep 0.5
done
[ -n "$listed" ] || fail "the CRL does not list $renewed 20 s after its revocation: $crl"
if tcurl --cert renewed.pem --key device.key -X POST "$api/v1/renew" >refused.json 2>/dev/null; then
	fail "a revoked certificate renewed"
fi
grep -q certificate_revoked refused.json || fail "renewal with a revoked certificate: $(cat refused.json)"
echo "smoke: revoked $renewed: OCSP, CRL and renewal agree"
