data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  # Principals of this account that hold sts:AssumeRole on the roles may assume them.
  account_root_arn = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

module "archive" {
  source = "../../modules/archive-bucket"

  providers = {
    aws         = aws
    aws.replica = aws.replica
  }

  bucket_name = var.bucket_name
  prefix      = "audit"

  # One day on purpose. COMPLIANCE retention cannot be shortened or removed by anyone,
  # including the account root user, and a bucket holding locked objects cannot be deleted
  # until the last lock expires. Try the module with 1 day; raise it for production.
  retention_days = 1

  break_glass_principal_arn = var.break_glass_principal_arn

  create_roles                   = true
  writer_trusted_principal_arns  = [local.account_root_arn]
  auditor_trusted_principal_arns = [local.account_root_arn]

  replica_region = var.replica_region

  transition_days                    = 30
  transition_storage_class           = "GLACIER_IR"
  noncurrent_version_expiration_days = 30
}
