# The archive bucket: Object Lock in COMPLIANCE mode, versioned, SSE-KMS with a customer
# managed key, no public access, no ACLs, a Deny-only bucket policy and access logs in a
# separate bucket. All of that is the internal locked-bucket module (modules/locked-bucket),
# which the optional cross-region replica (replication.tf) uses too. The signing key is in
# kms.tf and IAM in iam.tf.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  root_arn   = "arn:${local.partition}:iam::${local.account_id}:root"

  replicate = var.replica_region != null

  # Keys the agent writes: <prefix>/<stream>/<seq>.ndjson.<ext>, or <stream>/... at the root.
  object_prefix      = var.prefix == "" ? "" : "${var.prefix}/"
  writer_objects_arn = "${module.archive_bucket.bucket_arn}/${local.object_prefix}*"

  writer_principal_arns  = concat(var.writer_principal_arns, aws_iam_role.writer[*].arn)
  auditor_principal_arns = concat(var.auditor_principal_arns, aws_iam_role.auditor[*].arn)
}

module "archive_bucket" {
  source = "./modules/locked-bucket"

  bucket_name            = var.bucket_name
  access_log_bucket_name = "${var.bucket_name}-access-logs"
  object_prefix          = local.object_prefix

  retention_days                     = var.retention_days
  break_glass_principal_arn          = var.break_glass_principal_arn
  kms_deletion_window_days           = var.kms_deletion_window_days
  access_log_retention_days          = var.access_log_retention_days
  transition_days                    = var.transition_days
  transition_storage_class           = var.transition_storage_class
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  tags                               = var.tags
}
