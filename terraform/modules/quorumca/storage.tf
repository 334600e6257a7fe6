# Each server keeps its Raft log, snapshots and state on an EBS volume that
# outlives the instance. Volumes are not attached by Terraform: a server
# claims one at boot (modules/user-data/templates/user-data.sh.tftpl), in
# its own zone, and takes the volume's node name as its Raft ID. A
# replacement therefore comes back as the same server with its data, and
# only catches up.

resource "aws_ebs_volume" "data" {
  count = local.volume_count

  # Volume i lives in zone i mod 3, so the slots of each zone are spread
  # evenly whatever the count.
  availability_zone = local.availability_zones[count.index % 3]
  size              = var.data_volume_size
  type              = var.data_volume_type
  iops              = var.data_volume_iops
  throughput        = var.data_volume_throughput
  encrypted         = true
  kms_key_id        = var.ebs_kms_key_arn
  final_snapshot    = var.data_volume_final_snapshot

  tags = merge(local.tags, {
    Name            = "${var.name}-data-${count.index}"
    "quorumca-node" = "${var.name}-${count.index}"
    "quorumca-slot" = tostring(count.index)
  })

  lifecycle {
    precondition {
      condition     = length(distinct(local.availability_zones)) == 3
      error_message = "subnet_ids must be in three different availability zones (got ${join(", ", local.availability_zones)})."
    }
  }
}
