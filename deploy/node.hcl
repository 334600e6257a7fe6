# quorumca node configuration. One file per node; start with
#   quorumca server -config /etc/quorumca/node.hcl
#
# Three nodes make a cluster that survives the loss of any one. The first
# node bootstraps the cluster and creates the authority; the others join
# through any existing member.

# debug, info (the default), warn or error; -log-level on the command line
# wins. Like every setting marked "reloaded", applied again on SIGHUP
# (systemctl reload quorumca); others changed in this file are logged as
# needing a restart.
# log_level = "info"

# Unique, stable name of this node. It is the node's Raft ID: keep it across
# restarts and replacements of the same host.
node_name = "ca-1"

# Where Raft's log, snapshots and the state database live. Put it on a
# durable, encrypted volume: losing it means re-joining from the others.
data_dir = "/var/lib/quorumca"

# The HTTPS API: clients, devices and admins use it, and other nodes reach
# this node's internal RPC (forwarding, joins) on the same port. Nodes never
# see the certificate below: they ask for the name node.quorumca.internal
# and get this node's node certificate of the cluster CA (see cluster).
api {
  listen = "0.0.0.0:8443"

  # host:port the other nodes dial to reach this API. Defaults to the
  # listen address.
  advertise = "ca-1.internal.example:8443"

  # The URLs clients address the API at: a jwk provisioner's token and a
  # renewal token must name one of them + the path ("aud":
  # "https://ca.internal.example/v1/sign"). The request's Host header is
  # never trusted for this, so a token minted for another CA that shares a
  # provisioner key is refused. List the balancer, and each node's own URL if
  # clients also address nodes directly; the same list on every node.
  # Defaults to https:// + advertise.
  public_urls = ["https://ca.internal.example", "https://ca-1.internal.example:8443"]

  # Server certificate (PEM; may include its chain) and key of this API,
  # for clients. Reloaded: new connections get the files' new contents.
  tls_cert_file = "/etc/quorumca/tls/node.pem"
  tls_key_file  = "/etc/quorumca/tls/node-key.pem"
  # Or let the cluster issue this node its own API certificate from a
  # provisioner of kind server (below), renewed on its own; the files above
  # then serve only until the first one is issued, and may be left out.
  tls_provisioner = "servers"

  # Balancers that send the PROXY protocol (AWS NLB, HAProxy send-proxy-v2):
  # their headers are trusted, so audit entries show devices' addresses.
  # A header from any other address is not believed.
  proxy_protocol_from = ["10.0.0.0/16"]

  # Connections one client address (IPv6: one /64) may hold on the API and
  # plain-HTTP listeners, and how many of them may sit idle between
  # requests: beyond, the longest idle (idle 5 s or more) is closed, and a
  # new connection takes an idle one's place or, with none idle, is closed
  # at once. Behind a balancer without PROXY headers every client has the
  # balancer's address: raise these, or send the headers.
  # max_connections_per_client      = 4096
  # max_idle_connections_per_client = 64
}

# pprof and metrics over plain HTTP: keep it on the host or a management
# network. Metrics are also on the API at /v1/metrics.
admin {
  listen = "127.0.0.1:9090"
}

# A bearer token that /v1/metrics requires, on the API and the admin
# listener alike (optional; without it metrics are open). The file holds the
# token (16 characters or more), read at start; Prometheus sends the same
# file with `authorization: { credentials_file: ... }` in its scrape config.
# metrics {
#   bearer_token_file = "/etc/quorumca/metrics.token"
# }

# Continuous profiling to a Pyroscope server (optional).
# profiling {
#   pyroscope {
#     server_address = "http://pyroscope.internal.example:4040"
#     upload_rate    = "15s"
#   }
# }

# Plain HTTP for revocation checking: CRLs and OCSP (RFC 5280 advises
# against needing TLS to check revocation). Optional.
http {
  listen = "0.0.0.0:8080"
}

# The OCSP responder (on both listeners) answers anyone: each source
# address (an IPv6 /64 counts as one) may ask rate per second, with bursts;
# beyond that it gets 429 and the OCSP "tryLater" answer. Behind a balancer,
# use the PROXY protocol (api.proxy_protocol_from) so sources are devices,
# not the balancer. The most recently used signed answers are kept in up
# to cache_mb MiB of memory, every answer still served in <data_dir>/ocsp.db.
ocsp {
  rate     = 100
  burst    = 1000
  cache_mb = 64
}

# Raft replication between nodes (TCP). Open it only between the nodes.
raft {
  listen    = "0.0.0.0:8300"
  advertise = "10.0.1.10:8300" # an IP the other nodes can dial
}

# Gossip: nodes find each other, and the leader keeps Raft membership in
# line with who is alive. Always encrypted: every node has the same key
# (quorumca keygen makes one). key_file may hold several, one per line: the
# first encrypts, all decrypt; SIGHUP reads it again (rotation: add the new
# key second on every node, then first, then remove the old one).
gossip {
  listen     = "0.0.0.0:8301"
  advertise  = "10.0.1.10:8301"
  key_file   = "/etc/quorumca/gossip.key"
  # Where to find the others: host:port entries, or a provider
  # ("provider=NAME key=value ...") for cloud auto-join.
  retry_join = ["10.0.1.10:8301", "10.0.2.10:8301", "10.0.3.10:8301"]
  # On AWS: the running EC2 instances tagged quorumca-cluster=prod, at
  # their private IPv4 address (addr_type=public_v4 for the public one) and
  # port 8301 (port=... otherwise). The instance role needs
  # ec2:DescribeInstances; region defaults to the instance's own.
  # retry_join = ["provider=aws tag_key=quorumca-cluster tag_value=prod region=eu-west-1"]
}

cluster {
  # With gossip, every node has the same settings: once this many servers
  # are present they form one cluster (no node bootstraps by hand).
  bootstrap_expect    = 3
  voters              = 3     # 3 or 5; further servers are non-voters
  dead_server_cleanup = "10m" # remove a server dead this long (never below quorum)
  # A server that joins later is a non-voter until it has been healthy
  # this long; then it is promoted if voters are missing.
  server_stabilization_time = "10s"

  # Without gossip: exactly one node sets bootstrap = true, once, and every
  # other node lists existing members to join through.
  # bootstrap = true
  # join      = ["https://ca-1.internal.example:8443", "https://ca-2.internal.example:8443"]

  # Shared secret that lets a node that cannot use ca_key (below) get its
  # node certificate from a member. It never crosses the wire: the node
  # proves it with an HMAC over a member's one-time challenge, and the
  # member proves it back. Every node of a cluster has the same one. At
  # least 16 characters (e.g. `openssl rand -hex 32`). Prefer a file
  # readable only by the quorumca user; join_secret = "..." also works.
  join_secret_file = "/etc/quorumca/join.secret"

  # Key of the cluster CA, which certifies nodes for their mutual TLS (Raft,
  # forwarding, joins, every internal RPC). Node identity is its own trust
  # domain: use a key of its own, never an authority's, and no public
  # authority's certificate is ever accepted as a node. The same URI on
  # every node. A node that can use it issues its own node certificate; one
  # that cannot proves the join secret to a member and is given one.
  # Certificates renew themselves (7 days, at two thirds).
  ca_key = "awskms:alias/quorumca-cluster?region=eu-west-1"

  # Optional, for nodes that cannot use ca_key: the cluster CA's
  # fingerprint, as /v1/health shows it (cluster_ca_fingerprint). Such a
  # node then sends its proof only to a member whose TLS certificate
  # chains to that key.
  # ca_fingerprint = "sha256:3f5c..."

  # ca_file is no longer used (nodes do not trust any public root for each
  # other); an older config that still sets it starts with a warning.
}

# The issuing authority, created in the replicated state when the cluster is
# bootstrapped (ignored on joining nodes and after the first start). Every
# node must be able to open the same key URI.
authority "default" {
  root_file  = "/etc/quorumca/root.pem"         # trust anchor clients use
  chain_file = "/etc/quorumca/intermediate.pem" # issuing certificate first

  # Signing key of the intermediate; the node never holds it.
  #   AWS KMS (credentials from the instance role; nothing secret here):
  key = "awskms:alias/quorumca-issuing?region=eu-west-1"
  #   PKCS#11 HSM (the cgo build; token by label, PIN from a file or env):
  # key = "pkcs11:token=ca-token;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/quorumca/hsm.pin"
  #   A key in a file, for development only (needs allow_insecure_soft_signer):
  # key = "softkey:/etc/quorumca/intermediate.key"

  # Where issued certificates say their CRL and OCSP responder are: the
  # plain-HTTP address of the cluster, usually its load balancer.
  base_url = "http://ca.internal.example:8080"

  # A delegated OCSP responder: a key of its own that the issuer certifies
  # for OCSP signing only, so OCSP never spends the issuing key's KMS
  # quota. Set up with the authority; later with
  # 'quorumca operator authority ocsp-responder'.
  ocsp_responder_key = "awskms:alias/quorumca-ocsp?region=eu-west-1"

  # CRLs: how long each is valid, how often it is signed anew without a
  # revocation, and, for fleets with over ~100,000 revoked certificates
  # unexpired, into how many shards each issuer's CRL is partitioned
  # (fixed per issuer when it takes them; see the README).
  # crl {
  #   validity = "24h"
  #   refresh  = "1h"
  #   shards   = 16
  # }
}

# Provisioners decide who may get which certificate. Created at bootstrap;
# change them later through the admin API. Reloaded on a bootstrapping
# node: the key in each existing jwk provisioner's jwk_file, nothing else. With none, a "default"
# enrollment-token provisioner that allows any name is created.
provisioner "devices" {
  kind      = "enrollment-token" # an admin mints single-use tokens
  authority = "default"

  dns         = [".devices.internal.example"] # "*", "a.b", "*.b" (one label), ".b" (any depth)
  ip          = ["10.0.0.0/8"]                # CIDRs
  common_name = []                            # globs; empty: the CN must be one of the names

  # "**" (any URI) or scheme://host[:port][/path], matched on the parsed
  # URI: host as in dns ("*.b", ".b"), port none, a number or "*"; in the
  # path * matches within a segment, ** across. User info, a query or a
  # fragment only where the pattern names them (...?* ...#*). spiffe://
  # patterns take valid SPIFFE IDs only.
  uri = ["spiffe://prod/devices/*"]

  # Wildcard certificates ("*.devices.internal.example") only with this,
  # where dns covers every name the wildcard stands for. Off by default: a
  # policy for names under a domain does not grant a wildcard for it.
  # allow_wildcard = true

  default_ttl = "24h"
  max_ttl     = "720h"
  key_types   = ["P-256", "Ed25519"] # P-256, P-384, P-521, Ed25519, RSA
  eku         = "client"             # server, client or both
  renew_grace = "72h"                # renew up to 3 days after expiry (devices that slept)
  # revoke_on_renew = true           # a renewal revokes the certificate it replaces
  # server_keygen = true             # EST clients may have the CA make their keys (serverkeygen)
}

# The servers' own API certificates (api.tls_provisioner). Its names are
# reserved: no other provisioner issues them, nor a wildcard over them.
provisioner "servers" {
  kind        = "server"
  dns         = ["ca.internal.example", "*.internal.example"] # names or *.domain
  eku         = "server"
  default_ttl = "24h"
  max_ttl     = "24h"
}

# ACME (RFC 8555) at https://<public URL>/acme/services/directory, for
# certbot, lego, Caddy, cert-manager. Names as any provisioner's policy;
# wildcards are validated with dns-01 only.
provisioner "services" {
  kind        = "acme"
  dns         = [".svc.internal.example"]
  default_ttl = "720h"
  max_ttl     = "2160h"
  eku         = "server"
  require_eab = true                                # new accounts need a key from POST /v1/admin/acme/eab
  challenges  = ["http-01", "dns-01", "tls-alpn-01"] # the default
}

provisioner "automation" {
  kind        = "jwk" # holders of the private key mint their own one-time JWTs
  jwk_file    = "/etc/quorumca/automation.jwk.json"
  dns         = ["*.svc.internal.example"]
  default_ttl = "24h"
  eku         = "both"
}

# Where this node validates ACME challenges: DNS servers for A/AAAA and
# TXT lookups (default: the system's), and the http-01 and tls-alpn-01
# ports (default 80 and 443). A validation never connects to link-local
# or cloud metadata addresses, and follows redirects only to these ports.
# acme {
#   resolvers      = ["10.0.0.2:53"]
#   http01_port    = 80
#   tlsalpn01_port = 443
# }

# This node's share of each key's signing budget. AWS's quota for
# asymmetric signing is per account and region, shared by every node: set
# rate to this node's share. Requests beyond it are refused with 429 and
# Retry-After rather than queued.
signer {
  concurrency = 16     # signatures in flight per key (halves under throttling)
  rate        = 100    # per key, per second; 0: no limit
  burst       = 20
  timeout     = "5s"   # per call to KMS / the HSM
  max_wait    = "2s"   # how long a request may wait for budget
  # Keys this node creates (authority create -create-keys, rotate
  # -create-key) take this key's policy and these tags; without it a new
  # KMS key gets the account's default policy. (The Terraform module lets
  # no server create keys: it makes each generation itself.)
  # new_key_policy_from = "awskms:arn:aws:kms:eu-west-1:123456789012:key/..."
  # new_key_tags        = { "quorumca-cluster" = "prod-ca" }
}

# The leader re-signs a CRL that lacks a revocation at most this often; a
# revocation is on the CRL within it (OCSP reports it at once).
# crl {
#   interval = "5s"
# }

# Per certificate lineage (a certificate and its renewals), on this node:
# how often its holder may renew and revoke; beyond it 429 + Retry-After.
# lineage_limits {
#   renewals_per_minute           = 6
#   renewal_burst                 = 10
#   holder_revocations_per_minute = 6
#   holder_revocation_burst       = 10
# }

# This node's view of the audit log as JSON lines, for a log shipper: every
# replicated entry it applies, and the requests it refused. Reloaded:
# reopened, so a rotation moves it away and signals the node
# (deploy/quorumca.logrotate).
audit {
  file = "/var/log/quorumca/audit.jsonl"
}

# Scheduled backups: while this node leads, it writes a snapshot of the
# whole state (as "quorumca operator snapshot save" does, for "snapshot
# restore") to the destination every interval (at least 1m). S3 takes the
# archive's parameters (region, endpoint, sse, kms_key_id); keep the bucket
# versioned, with Object Lock and a lifecycle rule that expires old ones.
# snapshot {
#   interval    = "1h"
#   destination = "s3://quorumca-backups/prod?region=eu-west-1&sse=aws:kms"
# }

# Keys in files ("softkey:") are refused unless this is set. Development only.
# allow_insecure_soft_signer = true

# When this node bootstraps the cluster it writes the first admin token here
# (mode 0600). Use it to create real admins, then revoke it.
bootstrap_admin_token_file = "/var/lib/quorumca/bootstrap-admin.token"
