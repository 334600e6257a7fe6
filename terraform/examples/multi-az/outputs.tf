output "api_url" {
  description = "The CA's API, for QUORUMCA_ADDR and the device agent."
  value       = "https://${local.ca_name}:8443"
}

output "revocation_base_url" {
  description = "Where issued certificates point for CRLs and OCSP."
  value       = module.quorumca.revocation_base_url
}

output "lb_dns_name" {
  description = "DNS name of the network load balancer."
  value       = module.quorumca.lb_dns_name
}

output "kms_key_arn" {
  description = "ARN of the issuing key."
  value       = module.quorumca.kms_key_arn
}

output "kms_key_uri" {
  description = "Signer URI of the issuing key (quorumca operator authority csr/import -key)."
  value       = module.quorumca.kms_key_uri
}

output "asg_name" {
  description = "Auto-scaling group of the servers."
  value       = module.quorumca.asg_name
}

output "ssm_parameters" {
  description = "SSM parameters to create before the servers can start."
  value       = module.quorumca.ssm_parameters
}

output "vpc_id" {
  description = "The VPC of the cluster."
  value       = aws_vpc.this.id
}

output "alert_topic_arn" {
  description = "SNS topic of the security alerts on the signing keys: subscribe the security team to it."
  value       = module.quorumca.alert_topic_arn
}
