terraform {
  # 1.9: input validations that refer to other variables.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.82.1 added availability_zone_distribution to aws_autoscaling_group.
      version = ">= 5.82.1, < 7.0"
    }
  }
}
