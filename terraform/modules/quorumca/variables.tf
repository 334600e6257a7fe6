# --- Cluster ------------------------------------------------------------------

variable "name" {
  description = "Name of the cluster. Prefixes every resource name, and is the value of the quorumca-cluster tag that cloud auto-join and the data volumes are found by."
  type        = string

  validation {
    # Load balancer and target group names allow 32 characters; "-http" is
    # the longest suffix added.
    condition     = can(regex("^[a-z][a-z0-9-]{0,25}[a-z0-9]$", var.name))
    error_message = "name must be 2-27 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "instance_count" {
  description = "Number of quorumca servers. Odd, so that a majority survives the loss of a minority: 3 survives one failure, 5 two. Also the cluster's bootstrap_expect."
  type        = number
  default     = 3

  validation {
    # bootstrap_expect accepts 1-7; one or two servers cannot survive a failure.
    condition     = var.instance_count >= 3 && var.instance_count <= 7 && var.instance_count % 2 == 1
    error_message = "instance_count must be odd and between 3 and 7 (3, 5 or 7)."
  }
}

variable "subnet_ids" {
  description = "Three private subnets, one in each of three availability zones, for the servers (and the load balancer unless lb_subnet_ids is set)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) == 3 && length(distinct(var.subnet_ids)) == 3
    error_message = "subnet_ids must name exactly 3 distinct subnets (one per availability zone)."
  }
}

variable "ami_id" {
  description = "AMI of the servers: a systemd Linux with quorumca at /usr/local/bin/quorumca, the AWS CLI v2 and, with cloudwatch_enabled, the CloudWatch agent (for example Amazon Linux 2023 with the binary and amazon-cloudwatch-agent baked in by Packer). Changing it rolls the cluster one server at a time."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be an AMI ID such as ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the servers. Signing happens in KMS; a server's own work is TLS, Raft and certificate encoding."
  type        = string
  default     = "m6i.large"
}

variable "voters" {
  description = "Raft voters to keep (3 or 5); further servers are non-voters, promoted when a voter goes away. Defaults to 3 for three servers and 5 otherwise."
  type        = number
  default     = null

  validation {
    condition     = var.voters == null ? true : contains([3, 5], var.voters)
    error_message = "voters must be 3 or 5."
  }

  validation {
    condition     = var.voters == null ? true : var.voters <= var.instance_count
    error_message = "voters cannot exceed instance_count."
  }
}

variable "dead_server_cleanup" {
  description = "How long a server must be gone before the leader removes it from Raft (never below a safe quorum). Longer than an instance replacement takes, so a replaced server rejoins under its old name."
  type        = string
  default     = "30m"

  validation {
    condition     = can(regex("^([0-9]+h)?([0-9]+m)?([0-9]+s)?$", var.dead_server_cleanup)) && var.dead_server_cleanup != ""
    error_message = "dead_server_cleanup must be a duration such as \"30m\" or \"1h30m\"."
  }

  validation {
    condition = !can(regex("^([0-9]+h)?([0-9]+m)?([0-9]+s)?$", var.dead_server_cleanup)) ? true : (
      sum([for i, n in regex("^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$", var.dead_server_cleanup) :
      tonumber(coalesce(n, "0")) * [3600, 60, 1][i]]) >= max(600, var.health_check_grace_period)
    )
    error_message = "dead_server_cleanup must be at least 10m and at least health_check_grace_period: a server being replaced must not be removed from Raft before its replacement has had the time to boot and take its place."
  }
}

variable "kms_sign_budget" {
  description = "KMS Sign requests per second the whole cluster may make. The account's ECC signing quota (300/s in most regions) is shared by every caller in the account and region; each server's signer gets an equal share and answers 429 beyond it."
  type        = number
  default     = 240

  validation {
    condition     = var.kms_sign_budget >= var.instance_count
    error_message = "kms_sign_budget must give every server at least one request per second."
  }
}

variable "extra_config" {
  description = "HCL appended to every server's node.hcl, for blocks the module does not write (provisioner, profiling). Must not repeat a block the module writes."
  type        = string
  default     = ""
}

# --- Network access ------------------------------------------------------------

variable "allowed_cidr_blocks" {
  description = "Client networks (IPv4 or IPv6 CIDRs) allowed to reach the API (port 8443) through the load balancer."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidr_blocks) > 0
    error_message = "allowed_cidr_blocks must name at least one network."
  }

  validation {
    condition     = alltrue([for c in var.allowed_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Every entry of allowed_cidr_blocks must be a CIDR block such as 10.0.0.0/16."
  }
}

variable "http_listener_enabled" {
  description = "Serve CRLs and OCSP over plain HTTP (port 8080) through the load balancer. Issued certificates name this address, so relying parties must reach it."
  type        = bool
  default     = true
}

variable "http_allowed_cidr_blocks" {
  description = "Networks allowed to fetch CRLs and OCSP responses (port 8080). Defaults to allowed_cidr_blocks."
  type        = list(string)
  default     = null

  validation {
    condition     = var.http_allowed_cidr_blocks == null ? true : alltrue([for c in var.http_allowed_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Every entry of http_allowed_cidr_blocks must be a CIDR block such as 10.0.0.0/16."
  }
}

variable "revocation_base_url" {
  description = "Plain-HTTP URL that issued certificates name for CRLs and OCSP. It is written into every certificate, so prefer a DNS name you control (an alias of the load balancer) to the load balancer's own name, the default."
  type        = string
  default     = null

  validation {
    condition     = var.revocation_base_url == null ? true : can(regex("^http://[^/?#]+$", var.revocation_base_url))
    error_message = "revocation_base_url must be http://host[:port] (no path): relying parties fetch CRLs and OCSP over plain HTTP (RFC 5280, RFC 6960), and an https URL would need a working TLS chain to check revocation."
  }
}

variable "api_server_names" {
  description = "DNS names clients reach the API by (your alias of the load balancer, such as ca.example.internal). Each server's own API certificate, issued by the cluster, carries them, the load balancer's name and the server's private DNS name; no other provisioner may issue them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for n in var.api_server_names : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))])
    error_message = "Every entry of api_server_names must be a lowercase DNS name of two labels or more, with no wildcard."
  }
}

variable "api_certificate_ttl" {
  description = "Lifetime of each server's own API certificate; it is renewed two thirds through it."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^[0-9]+h$", var.api_certificate_ttl)) && try(tonumber(trimsuffix(var.api_certificate_ttl, "h")) >= 1 && tonumber(trimsuffix(var.api_certificate_ttl, "h")) <= 2160, false)
    error_message = "api_certificate_ttl must be whole hours between 1h and 2160h (90 days)."
  }
}

variable "https_egress_cidr_blocks" {
  description = "Where servers may open HTTPS (443) connections: AWS APIs (KMS, EC2, SSM), directly, through a NAT gateway or through VPC endpoints."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.https_egress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Every entry of https_egress_cidr_blocks must be a CIDR block."
  }
}

variable "acme_validation_cidr_blocks" {
  description = "Where servers may connect to validate ACME challenges: http-01 (port 80) and tls-alpn-01 (443) on the names being ordered. Empty: no such connections, so only dns-01 validates (DNS goes through the VPC resolver, which security groups do not filter)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.acme_validation_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Every entry of acme_validation_cidr_blocks must be a CIDR block."
  }
}

variable "acme_perspectives" {
  description = "ACME: how many availability zones must see a challenge's answer before it passes. Every server validates and names its zone, so 2 guards against one zone's DNS or routing being spoofed and still passes with a zone down."
  type        = number
  default     = 2

  validation {
    condition     = var.acme_perspectives >= 1 && var.acme_perspectives <= 3 && floor(var.acme_perspectives) == var.acme_perspectives
    error_message = "acme_perspectives must be 1, 2 or 3 (the module spreads servers over three zones)."
  }
}

variable "acme_resolvers" {
  description = "ACME: DNS resolvers (host:port) the servers ask when they validate. Empty: the system's, the VPC resolver."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.acme_resolvers : can(regex("^[^\\s]+:[0-9]+$", r))])
    error_message = "Every entry of acme_resolvers must be host:port."
  }
}

variable "additional_security_group_ids" {
  description = "Further security groups for the servers (for example to reach a log shipper or a profiling server)."
  type        = list(string)
  default     = []
}

# --- Load balancer ---------------------------------------------------------------

variable "lb_internal" {
  description = "Whether the network load balancer is internal (private addresses only)."
  type        = bool
  default     = true
}

variable "lb_subnet_ids" {
  description = "Subnets of the load balancer, one per availability zone (public ones for an internet-facing balancer). Defaults to subnet_ids."
  type        = list(string)
  default     = null

  validation {
    condition     = var.lb_subnet_ids == null ? true : length(var.lb_subnet_ids) == 3
    error_message = "lb_subnet_ids must name exactly 3 subnets, in the servers' availability zones."
  }
}

variable "lb_cross_zone_enabled" {
  description = "Spread connections over the servers of every zone. Off, each zone's balancer node uses only its zone's servers, so a zone with fewer servers carries more load per server."
  type        = bool
  default     = true
}

variable "lb_deletion_protection" {
  description = "Refuse to delete the load balancer (turn off before destroying the cluster): its address is what every client and every issued certificate points at."
  type        = bool
  default     = true
}

# --- Instances -------------------------------------------------------------------

variable "health_check_type" {
  description = "What makes the auto-scaling group replace a server: \"EC2\" only (the instance is impaired). The load balancer's /v1/ready check (\"ELB\") is refused: it fails on every server while a quorum is lost, and replacing them all would make an outage no leader can repair. Readiness gates rollouts through the launch lifecycle hook instead."
  type        = string
  default     = "EC2"

  validation {
    condition     = var.health_check_type == "EC2"
    error_message = "health_check_type must be \"EC2\": load balancer (\"ELB\") health checks would replace every server while the cluster has no quorum."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before a failing health check counts (boot, volume attachment, joining the cluster)."
  type        = number
  default     = 600

  validation {
    condition     = var.health_check_grace_period >= 0
    error_message = "health_check_grace_period must not be negative."
  }
}

variable "instance_warmup" {
  description = "Seconds a rolling update waits after a new server is in service (its launch hook completed: it stayed ready for ready_stable_seconds) before it replaces the next one."
  type        = number
  default     = 60

  validation {
    condition     = var.instance_warmup >= 0
    error_message = "instance_warmup must not be negative."
  }
}

variable "ready_stable_seconds" {
  description = "How long a new server's /v1/ready must answer 200 without a break before it completes its launch hook and counts as in service. At least the cluster's server stabilization time (10 s), after which a joining server is promoted to voter."
  type        = number
  default     = 60

  validation {
    condition     = var.ready_stable_seconds >= 10
    error_message = "ready_stable_seconds must be at least 10 (the stabilization time before a promotion)."
  }
}

variable "launch_timeout" {
  description = "Seconds a new server has to claim its volume (up to 15 minutes while a predecessor lets go of it), start and stay ready before its launch hook abandons it (the instance is terminated and the group tries again). At most 7200."
  type        = number
  default     = 1800

  validation {
    condition     = var.launch_timeout >= 1200 && var.launch_timeout <= 7200
    error_message = "launch_timeout must be between 1200 (the volume wait, boot and readiness) and 7200 seconds."
  }
}

variable "termination_timeout" {
  description = "Seconds a terminating server may wait until the others hold a healthy quorum without it, stop, and see them healthy again, before the group terminates it anyway. At most 7200."
  type        = number
  default     = 900

  validation {
    condition     = var.termination_timeout >= 300 && var.termination_timeout <= 7200
    error_message = "termination_timeout must be between 300 and 7200 seconds."
  }
}

variable "root_volume_size" {
  description = "Size of the root volume, GiB."
  type        = number
  default     = 20
}

variable "ssm_session_manager_enabled" {
  description = "Allow AWS Systems Manager Session Manager shells on the servers. Off by default: a shell on a server can sign as its role. Turn it on for the bootstrap (reading the first admin token) or an investigation, then off again."
  type        = bool
  default     = false
}

variable "iam_role_path" {
  description = "Path of the servers' IAM role and instance profile."
  type        = string
  default     = "/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9+=,.@_-]+/)*$", var.iam_role_path))
    error_message = "iam_role_path must begin and end with a slash, such as / or /quorumca/."
  }
}

variable "iam_permissions_boundary_arn" {
  description = "Permissions boundary for the servers' IAM role, where an organisation requires one."
  type        = string
  default     = null

  validation {
    condition     = var.iam_permissions_boundary_arn == null ? true : can(regex("^arn:aws(-[a-z]+)*:iam::([0-9]{12}|aws):policy/[A-Za-z0-9+=,.@_/-]+$", var.iam_permissions_boundary_arn))
    error_message = "iam_permissions_boundary_arn must be the ARN of an IAM managed policy (arn:aws:iam::<account>:policy/<name>)."
  }
}

# --- Data volumes ------------------------------------------------------------------

variable "data_volume_slots" {
  description = "Data volumes to keep, slots 0 to N-1 (slot i in zone i mod 3). Default: 3 * ceil(instance_count / 3). When lowering instance_count, keep it at its old value: which volumes a scale-in frees is known only afterwards (retired_volume_slots)."
  type        = number
  default     = null

  validation {
    condition     = var.data_volume_slots == null ? true : (floor(var.data_volume_slots) == var.data_volume_slots && var.data_volume_slots >= 3 && var.data_volume_slots <= 9)
    error_message = "data_volume_slots must be a whole number from 3 to 9."
  }
}

variable "retired_volume_slots" {
  description = "Slots whose data volumes are deleted (after a final snapshot, if data_volume_final_snapshot): the ones a scale-in freed, as the README's Operations section finds them."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for s in var.retired_volume_slots : floor(s) == s && s >= 0 && s <= 8]) && length(distinct(var.retired_volume_slots)) == length(var.retired_volume_slots)
    error_message = "retired_volume_slots must hold distinct slot numbers from 0 to 8."
  }
}

variable "data_volume_size" {
  description = "Size of each server's data volume (Raft log, snapshots and state), GiB."
  type        = number
  default     = 50

  validation {
    condition     = var.data_volume_size >= 1 && var.data_volume_size <= 16384
    error_message = "data_volume_size must be between 1 and 16384 GiB."
  }
}

variable "data_volume_type" {
  description = "EBS type of the data volumes. Raft fsyncs every commit: use SSD (gp3, io2)."
  type        = string
  default     = "gp3"

  validation {
    condition     = contains(["gp3", "gp2", "io1", "io2"], var.data_volume_type)
    error_message = "data_volume_type must be one of gp3, gp2, io1, io2."
  }
}

variable "data_volume_iops" {
  description = "Provisioned IOPS of each data volume (gp3, io1, io2). Default: the type's baseline."
  type        = number
  default     = null
}

variable "data_volume_throughput" {
  description = "Throughput of each gp3 data volume, MiB/s. Default: the gp3 baseline."
  type        = number
  default     = null
}

variable "ebs_kms_key_arn" {
  description = "KMS key that encrypts the data and root volumes. Default: the account's aws/ebs key."
  type        = string
  default     = null

  validation {
    condition     = var.ebs_kms_key_arn == null ? true : can(regex("^arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", var.ebs_kms_key_arn))
    error_message = "ebs_kms_key_arn must be the ARN of a KMS key (arn:aws:kms:<region>:<account>:key/<id>), not an alias or a key ID."
  }
}

variable "data_volume_final_snapshot" {
  description = "Snapshot each data volume when Terraform deletes it (destroying the cluster or lowering instance_count)."
  type        = bool
  default     = true
}

# --- Keys and secrets ------------------------------------------------------------------

variable "kms_deletion_window_in_days" {
  description = "Days a KMS key scheduled for deletion can still be recovered. A deleted issuing key cannot sign a CRL for the certificates it issued."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_in_days >= 7 && var.kms_deletion_window_in_days <= 30
    error_message = "kms_deletion_window_in_days must be between 7 and 30."
  }
}

variable "kms_key_administrators" {
  description = "IAM roles or users that administer the two signing keys (policy, rotation of aliases, disabling, deletion). Neither they nor anyone but the servers' role may sign or create grants. Keep at least one of them alive: a key whose administrators are all gone can be recovered only by AWS support."
  type        = list(string)

  validation {
    condition     = length(var.kms_key_administrators) > 0
    error_message = "kms_key_administrators must name at least one IAM role or user: without one, nobody could fix or delete the keys."
  }

  validation {
    condition = alltrue([for a in var.kms_key_administrators :
    can(regex("^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", a))])
    error_message = "Each of kms_key_administrators must be the ARN of an IAM role or user (arn:aws:iam::<account>:role/<name>), not an account root, a wildcard or an assumed-role session."
  }
}

variable "issuing_key_generations" {
  description = "Issuing keys to keep, one per intermediate generation: raise it to rotate the intermediate (a new key under the same policy and alerts), and keep the old ones while certificates they issued are valid (their CRLs are signed with them)."
  type        = number
  default     = 1

  validation {
    condition     = var.issuing_key_generations >= 1 && var.issuing_key_generations <= 10 && floor(var.issuing_key_generations) == var.issuing_key_generations
    error_message = "issuing_key_generations must be a whole number from 1 to 10."
  }
}

variable "issuing_key_generation_in_use" {
  description = "The generation whose chain is stored as issuing-chain: a cluster bootstrapped from scratch pairs that chain with this key. Set it once the new generation is imported and its chain stored."
  type        = number
  default     = 1

  validation {
    condition     = var.issuing_key_generation_in_use >= 1 && var.issuing_key_generation_in_use <= var.issuing_key_generations && floor(var.issuing_key_generation_in_use) == var.issuing_key_generation_in_use
    error_message = "issuing_key_generation_in_use must be one of the issuing_key_generations."
  }
}

variable "kms_vpc_endpoint_id" {
  description = "ID of the KMS interface VPC endpoint the servers reach KMS through. When set, the keys refuse kms:Sign that does not come through it, so the servers' credentials are of no use for signing outside the VPC."
  type        = string
  default     = null

  validation {
    condition     = var.kms_vpc_endpoint_id == null ? true : can(regex("^vpce-[0-9a-f]{8,17}$", var.kms_vpc_endpoint_id))
    error_message = "kms_vpc_endpoint_id must be a VPC endpoint ID (vpce-...)."
  }
}

variable "kms_multi_region" {
  description = "Create the signing keys as multi-Region primaries (this cannot be changed once they exist). Off by default: the key material stays in one region, the one place to confine and audit it. See the README's key administration section."
  type        = bool
  default     = false
}

variable "restore_signer_role_arns" {
  description = "IAM roles, besides this cluster's servers' role, that may sign with its issuing keys (never its cluster CA key): the servers' role (iam_role_arn) of a cluster restored from this one's snapshots in the same account and region, whose restored authority names these keys. Changing it rewrites the key policies, which raises the security alert."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.restore_signer_role_arns : can(regex("^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/.+$", a))])
    error_message = "restore_signer_role_arns must be IAM role ARNs."
  }
}

variable "backup_enabled" {
  description = "Back the cluster up: the leader writes a snapshot of the whole state every snapshot_interval to an S3 bucket the module makes (versioned, Object Lock, SSE-KMS), and AWS Backup snapshots the data volumes daily."
  type        = bool
  default     = true
}

variable "snapshot_interval" {
  description = "How often the leader writes a snapshot of the whole state to the backup bucket (at least 1m)."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^[0-9]+(m|h)$", var.snapshot_interval)) && !contains(["0m", "0h"], var.snapshot_interval)
    error_message = "snapshot_interval must be whole minutes or hours, such as \"30m\" or \"1h\"."
  }
}

variable "backup_retention_days" {
  description = "Days snapshots (in the bucket) and volume recovery points (in AWS Backup) are kept."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 1
    error_message = "backup_retention_days must be at least 1."
  }
}

variable "backup_object_lock_days" {
  description = "Days each snapshot object is locked against deletion and overwrite (Object Lock default retention). Below backup_retention_days."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_object_lock_days >= 1 && var.backup_object_lock_days < var.backup_retention_days
    error_message = "backup_object_lock_days must be at least 1 and below backup_retention_days (a locked object cannot expire)."
  }
}

variable "backup_object_lock_mode" {
  description = "Object Lock mode of the snapshots: GOVERNANCE (users with s3:BypassGovernanceRetention may still delete) or COMPLIANCE (nobody, not even the account root, until the lock ends)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.backup_object_lock_mode)
    error_message = "backup_object_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "backup_copy_vault_arn" {
  description = "An AWS Backup vault in another region (made outside this module) that each daily recovery point of the data volumes is copied to. Null: no copy."
  type        = string
  default     = null

  validation {
    condition     = var.backup_copy_vault_arn == null ? true : can(regex("^arn:aws(-[a-z]+)*:backup:[a-z0-9-]+:[0-9]{12}:backup-vault:[A-Za-z0-9_.-]+$", var.backup_copy_vault_arn))
    error_message = "backup_copy_vault_arn must be the ARN of an AWS Backup vault."
  }
}

variable "cloudwatch_enabled" {
  description = "Ship every server's audit log and quorumca journal to CloudWatch Logs and its metrics (/v1/metrics, as embedded metric format) to CloudWatch, with alarms and a dashboard on them. The AMI must then provide the CloudWatch agent (/opt/aws/amazon-cloudwatch-agent; the amazon-cloudwatch-agent package on Amazon Linux 2023)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the servers' journal and the metrics' log events."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs offers (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "audit_log_retention_days" {
  description = "Days CloudWatch keeps the audit log: what was issued, revoked and refused, by whom. Longer than the cluster's own audit_retention, since that is where the entries cut from the state remain."
  type        = number
  default     = 731

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.audit_log_retention_days)
    error_message = "audit_log_retention_days must be a retention CloudWatch Logs offers (1 to 3653 days, in its steps)."
  }
}

variable "logs_kms_key_arn" {
  description = "KMS key that encrypts the log groups. Default: a key the module makes for them, administered by kms_key_administrators, that only CloudWatch Logs may use, and only for this cluster's log groups."
  type        = string
  default     = null

  validation {
    condition     = var.logs_kms_key_arn == null ? true : can(regex("^arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.logs_kms_key_arn))
    error_message = "logs_kms_key_arn must be the ARN of a KMS key (arn:aws:kms:<region>:<account>:key/<id>), not an alias or a key ID."
  }
}

variable "crl_alarm_seconds" {
  description = "Alarm when a stored CRL's nextUpdate is this close: the cluster refreshes CRLs when half of their validity is left, so less means refreshes are failing."
  type        = number
  default     = 21600

  validation {
    condition     = var.crl_alarm_seconds > 0
    error_message = "crl_alarm_seconds must be positive."
  }
}

variable "issuer_expiry_alarm_days" {
  description = "Alarm when an issuer or root certificate of an authority expires within this many days: rotate the intermediate before."
  type        = number
  default     = 30

  validation {
    condition     = var.issuer_expiry_alarm_days > 0
    error_message = "issuer_expiry_alarm_days must be positive."
  }
}

variable "alert_topic_arn" {
  description = "SNS topic for security alerts (a key's policy rewritten, a key disabled or scheduled for deletion). Default: the module creates one, output as alert_topic_arn."
  type        = string
  default     = null

  validation {
    condition     = var.alert_topic_arn == null ? true : can(regex("^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", var.alert_topic_arn))
    error_message = "alert_topic_arn must be the ARN of an SNS topic."
  }
}

variable "ssm_parameter_prefix" {
  description = "SSM Parameter Store path under which the operator stores the cluster's secrets and certificates (see README). Default: /quorumca/<name>."
  type        = string
  default     = null

  validation {
    condition     = var.ssm_parameter_prefix == null ? true : can(regex("^(/[A-Za-z0-9_.-]+)+$", var.ssm_parameter_prefix))
    error_message = "ssm_parameter_prefix must be a path such as /quorumca/prod: a leading slash and no trailing one."
  }
}

variable "ssm_parameters_kms_key_arn" {
  description = "Customer managed KMS key that encrypts the SecureString parameters, if not the account's aws/ssm key: the servers are allowed to decrypt with it through SSM."
  type        = string
  default     = null

  validation {
    condition     = var.ssm_parameters_kms_key_arn == null ? true : can(regex("^arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", var.ssm_parameters_kms_key_arn))
    error_message = "ssm_parameters_kms_key_arn must be the ARN of a KMS key (arn:aws:kms:<region>:<account>:key/<id>), not an alias or a key ID."
  }
}

# --- Tags -----------------------------------------------------------------------------------

variable "tags" {
  description = "Tags for every resource, and for the servers and their volumes."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.tags), "quorumca-cluster")
    error_message = "The quorumca-cluster tag is set by the module (auto-join and volume ownership depend on it)."
  }
}
