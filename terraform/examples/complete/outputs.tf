output "bucket_name" {
  description = "Name of the archive bucket."
  value       = module.archive.bucket_name
}

output "signing_kms_key_arn" {
  description = "ARN of the signing key."
  value       = module.archive.signing_kms_key_arn
}

output "writer_role_arn" {
  description = "Role for the agent."
  value       = module.archive.writer_role_arn
}

output "auditor_role_arn" {
  description = "Role for the verifier."
  value       = module.archive.auditor_role_arn
}

output "replica_bucket_name" {
  description = "Name of the replica bucket."
  value       = module.archive.replica_bucket_name
}

output "agent_config_toml" {
  description = "Paste into the agent's configuration file."
  value       = module.archive.agent_config_toml
}

output "bucket_check_command" {
  description = "Run after apply to check the bucket."
  value       = module.archive.bucket_check_command
}
