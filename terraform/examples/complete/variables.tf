variable "bucket_name" {
  description = "Name of the archive bucket (globally unique)."
  type        = string
}

variable "region" {
  description = "Region of the archive bucket."
  type        = string
  default     = "eu-central-1"
}

variable "replica_region" {
  description = "Region of the replica bucket."
  type        = string
  default     = "eu-west-1"
}

variable "break_glass_principal_arn" {
  description = "Role that may change the bucket's protection settings later (null: nobody)."
  type        = string
  default     = null
}
