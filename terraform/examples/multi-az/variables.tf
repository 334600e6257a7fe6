variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name of the cluster."
  type        = string
  default     = "quorumca"
}

variable "instance_count" {
  description = "Number of quorumca servers: 3, 5 or 7."
  type        = number
  default     = 3
}

variable "ami_id" {
  description = "AMI with quorumca at /usr/local/bin/quorumca and the AWS CLI v2 (for example Amazon Linux 2023 with the binary added by Packer). Pinned rather than looked up, so a new base image rolls the cluster only when you choose."
  type        = string
}

variable "kms_key_administrators" {
  description = "IAM roles or users that administer the signing keys; include the identity that runs Terraform (KMS refuses a key policy that would lock its creator out)."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "Address range of the VPC; the three private subnets are /20s at its start."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrsubnet(var.vpc_cidr, 4, 3))
    error_message = "vpc_cidr must be an IPv4 CIDR of /24 or larger, such as 10.40.0.0/16."
  }
}

variable "client_cidr_blocks" {
  description = "Networks beyond this VPC (peered VPCs, VPN ranges) whose clients and devices may use the CA."
  type        = list(string)
  default     = []
}

variable "private_zone_name" {
  description = "Private Route 53 zone created for the VPC; the cluster is ca.<zone>. Its API certificate must name ca.<zone>."
  type        = string
  default     = "quorumca.internal"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default = {
    Service   = "quorumca"
    ManagedBy = "terraform"
  }
}
