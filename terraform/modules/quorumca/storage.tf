# Each server keeps its Raft log, snapshots and state on an EBS volume that
# outlives the instance. Volumes are not attached by Terraform: a server
# claims one at boot (modules/user-data/templates/user-data.sh.tftpl), in
# its own zone, and takes the volume's node name as its Raft ID. A
# replacement therefore comes back as the same server with its data, and
# only catches up.

# The cluster's volumes as they are in AWS, whatever this configuration
# says: lowering instance_count must not delete volumes servers still use.
data "aws_ebs_volumes" "existing" {
  filter {
    name   = "tag:${local.cluster_tag_key}"
    values = [var.name]
  }
  filter {
    name   = "tag-key"
    values = ["quorumca-slot"]
  }
}

resource "aws_ebs_volume" "data" {
  # Keyed by slot, so retiring one deletes that volume and no other.
  for_each = local.volume_keys

  # Volume i lives in zone i mod 3, so the slots of each zone are spread
  # evenly whatever the count.
  availability_zone = local.availability_zones[tonumber(each.key) % 3]
  size              = var.data_volume_size
  type              = var.data_volume_type
  iops              = var.data_volume_iops
  throughput        = var.data_volume_throughput
  encrypted         = true
  kms_key_id        = var.ebs_kms_key_arn
  final_snapshot    = var.data_volume_final_snapshot

  tags = merge(local.tags, {
    Name            = "${var.name}-data-${each.key}"
    "quorumca-node" = "${var.name}-${each.key}"
    "quorumca-slot" = each.key
  })

  lifecycle {
    precondition {
      condition     = length(distinct(local.availability_zones)) == 3
      error_message = "subnet_ids must be in three different availability zones (got ${join(", ", local.availability_zones)})."
    }
    # The group terminates servers of its own choosing, so which volumes a
    # scale-in frees is known only afterwards: volumes are deleted only
    # when their slot is retired by name.
    precondition {
      condition     = length(data.aws_ebs_volumes.existing.ids) <= length(local.volume_keys) + length(var.retired_volume_slots)
      error_message = "This plan would delete data volumes of slots that servers may still use (${length(data.aws_ebs_volumes.existing.ids)} exist, ${length(local.volume_keys)} kept): when lowering instance_count, keep data_volume_slots at its old value and list the volumes the scale-in freed in retired_volume_slots (README, Operations)."
    }
    precondition {
      condition = alltrue([for z in range(3) :
      length([for k in local.volume_keys : k if tonumber(k) % 3 == z]) >= ceil(var.instance_count / 3)])
      error_message = "Every zone needs a data volume for each server the group may place there (${ceil(var.instance_count / 3)}): raise data_volume_slots or retire fewer slots."
    }
  }
}

# Volumes were counted before they were keyed by slot.
moved {
  from = aws_ebs_volume.data[0]
  to   = aws_ebs_volume.data["0"]
}
moved {
  from = aws_ebs_volume.data[1]
  to   = aws_ebs_volume.data["1"]
}
moved {
  from = aws_ebs_volume.data[2]
  to   = aws_ebs_volume.data["2"]
}
moved {
  from = aws_ebs_volume.data[3]
  to   = aws_ebs_volume.data["3"]
}
moved {
  from = aws_ebs_volume.data[4]
  to   = aws_ebs_volume.data["4"]
}
moved {
  from = aws_ebs_volume.data[5]
  to   = aws_ebs_volume.data["5"]
}
moved {
  from = aws_ebs_volume.data[6]
  to   = aws_ebs_volume.data["6"]
}
moved {
  from = aws_ebs_volume.data[7]
  to   = aws_ebs_volume.data["7"]
}
moved {
  from = aws_ebs_volume.data[8]
  to   = aws_ebs_volume.data["8"]
}
