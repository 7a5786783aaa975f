output "bucket_name" {
  description = "Name of the archive bucket."
  value       = module.archive_bucket.bucket_id
}

output "bucket_arn" {
  description = "ARN of the archive bucket."
  value       = module.archive_bucket.bucket_arn
}

output "region" {
  description = "Region of the archive bucket."
  value       = local.region
}

output "prefix" {
  description = "Key prefix the writer policy allows."
  value       = var.prefix
}

output "retention_days" {
  description = "Default COMPLIANCE retention of the archive (and replica) bucket."
  value       = var.retention_days
}

output "sse_kms_key_arn" {
  description = "ARN of the KMS key of the archive bucket's default encryption."
  value       = module.archive_bucket.sse_kms_key_arn
}

output "signing_kms_key_arn" {
  description = "ARN of the ECC_NIST_P256 KMS key the agent signs seals with."
  value       = aws_kms_key.signing.arn
}

output "signing_kms_key_alias" {
  description = "Alias of the signing key."
  value       = aws_kms_alias.signing.name
}

output "writer_policy_arn" {
  description = "ARN of the IAM policy for the agent."
  value       = aws_iam_policy.writer.arn
}

output "auditor_policy_arn" {
  description = "ARN of the read-only IAM policy for the verifier and `bucket check`."
  value       = aws_iam_policy.auditor.arn
}

output "writer_role_arn" {
  description = "ARN of the writer role (null without create_roles)."
  value       = one(aws_iam_role.writer[*].arn)
}

output "auditor_role_arn" {
  description = "ARN of the auditor role (null without create_roles)."
  value       = one(aws_iam_role.auditor[*].arn)
}

output "access_log_bucket_name" {
  description = "Bucket receiving the archive bucket's S3 server access logs."
  value       = module.archive_bucket.access_log_bucket_id
}

output "replica_bucket_name" {
  description = "Name of the replica bucket (null without replica_region)."
  value       = one(module.replica_bucket[*].bucket_id)
}

output "replica_bucket_arn" {
  description = "ARN of the replica bucket (null without replica_region)."
  value       = one(module.replica_bucket[*].bucket_arn)
}

output "replica_sse_kms_key_arn" {
  description = "ARN of the replica bucket's encryption key (null without replica_region)."
  value       = one(module.replica_bucket[*].sse_kms_key_arn)
}

output "replication_role_arn" {
  description = "ARN of the role S3 replicates with (null without replica_region)."
  value       = one(aws_iam_role.replication[*].arn)
}

output "agent_config_toml" {
  description = "Settings for the agent's TOML configuration file (keys are the long option names with '_' for '-')."
  value       = <<-EOT
    bucket = "${module.archive_bucket.bucket_id}"
    prefix = "${var.prefix}"
    region = "${local.region}"
    retention_days = ${var.retention_days}
    kms_key_id = "${aws_kms_key.signing.arn}"
  EOT
}

output "bucket_check_command" {
  description = "Command that checks the deployed bucket's settings."
  value       = "audit-archiver bucket check --bucket ${module.archive_bucket.bucket_id} --min-retention-days ${var.retention_days}"
}
