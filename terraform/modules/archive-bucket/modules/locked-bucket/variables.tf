# Inputs of the internal locked-bucket module. The archive-bucket module validates the
# values it passes (see its variables.tf); these declarations only type them.

variable "bucket_name" {
  description = "Name of the Object Lock bucket."
  type        = string
}

variable "access_log_bucket_name" {
  description = "Name of the bucket that receives this bucket's S3 server access logs."
  type        = string
}

variable "replication_target" {
  description = "True for a bucket that only receives S3 replication: direct object writes are refused."
  type        = bool
  default     = false
}

variable "object_prefix" {
  description = "Key prefix of the segments (with its trailing '/', or empty for the root); scopes the transition rule."
  type        = string
}

variable "retention_days" {
  description = "Default COMPLIANCE retention in days."
  type        = number
}

variable "break_glass_principal_arn" {
  description = "The one principal the Deny statements exempt, or null."
  type        = string
  default     = null
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the bucket's KMS key is deleted."
  type        = number
}

variable "access_log_retention_days" {
  description = "Days after which access log objects expire."
  type        = number
}

variable "transition_days" {
  description = "Days after which segments move to transition_storage_class; null: never."
  type        = number
  default     = null
}

variable "transition_storage_class" {
  description = "Storage class segments transition to."
  type        = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent versions expire; null: never."
  type        = number
  default     = null
}

variable "tags" {
  description = "Tags for taggable resources."
  type        = map(string)
  default     = {}
}
