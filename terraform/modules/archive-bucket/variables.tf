variable "bucket_name" {
  description = "Name of the archive bucket. The module also creates <name>-access-logs and, with replication, <name>-replica and <name>-replica-logs."
  type        = string

  validation {
    # At most 49 characters, so that the longest derived name, <name>-replica-logs, fits
    # S3's 63. No dots: virtual-hosted-style HTTPS does not work with dotted bucket names.
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,47}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3 to 49 characters of a-z, 0-9 and '-', starting and ending with a letter or digit."
  }
}

variable "prefix" {
  description = "Key prefix the agent writes under (the agent's `prefix` setting). Empty means the bucket root."
  type        = string
  default     = "audit"

  validation {
    # Same rule as audit_archiver.core.layout.validate_prefix.
    condition = var.prefix == "" || (
      can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.prefix)) &&
      !contains(split("/", var.prefix), ".") &&
      !contains(split("/", var.prefix), "..")
    )
    error_message = "prefix must be empty or '/'-separated parts of A-Z a-z 0-9 . _ - with no leading or trailing '/' and no '.' or '..' parts."
  }
}

variable "retention_days" {
  description = "Default Object Lock retention in days, in COMPLIANCE mode. Nobody, not even the account root user, can shorten or remove it once an object is written: try the module with 1 first."
  type        = number
  default     = 365

  validation {
    condition     = var.retention_days > 0 && floor(var.retention_days) == var.retention_days && var.retention_days <= 36500
    error_message = "retention_days must be a whole number of days from 1 to 36500."
  }
}

variable "break_glass_principal_arn" {
  description = "IAM role or user ARN that alone may delete object versions after their retention ends and change the bucket policy, versioning and Object Lock configuration. Null: no principal may (the account root user can still delete the bucket policy). Later `terraform apply` runs that change those settings must run as this principal."
  type        = string
  default     = null

  validation {
    condition     = var.break_glass_principal_arn == null ? true : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", var.break_glass_principal_arn))
    error_message = "break_glass_principal_arn must be null or an IAM role or user ARN."
  }
}

variable "writer_principal_arns" {
  description = "Existing IAM principals (role/user ARNs) that run the agent. The signing key's policy lets them, and the writer role if created, sign. Attach the writer_policy_arn output to them as well."
  type        = list(string)
  default     = []
}

variable "auditor_principal_arns" {
  description = "Existing IAM principals (role/user ARNs) that verify the archive. The signing key's policy lets them, and the auditor role if created, read the public key and verify."
  type        = list(string)
  default     = []
}

variable "create_roles" {
  description = "Create a writer role and an auditor role with the policies attached."
  type        = bool
  default     = false
}

variable "writer_trusted_principal_arns" {
  description = "Principals allowed to assume the writer role (with create_roles)."
  type        = list(string)
  default     = []

  validation {
    condition     = !var.create_roles || length(var.writer_trusted_principal_arns) > 0
    error_message = "create_roles needs at least one writer_trusted_principal_arns entry."
  }
}

variable "auditor_trusted_principal_arns" {
  description = "Principals allowed to assume the auditor role (with create_roles)."
  type        = list(string)
  default     = []

  validation {
    condition     = !var.create_roles || length(var.auditor_trusted_principal_arns) > 0
    error_message = "create_roles needs at least one auditor_trusted_principal_arns entry."
  }
}

variable "replica_region" {
  description = "Region of a second Object Lock bucket that receives a copy of every object. Null: no replication. The aws.replica provider must be configured for this region."
  type        = string
  default     = null

  validation {
    condition     = var.replica_region == null ? true : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.replica_region))
    error_message = "replica_region must be null or a region name such as eu-west-1."
  }
}

variable "transition_days" {
  description = "Move objects to transition_storage_class this many days after creation. Null: never. Object Lock retention still applies after a transition."
  type        = number
  default     = null

  validation {
    condition     = var.transition_days == null ? true : var.transition_days > 0 && floor(var.transition_days) == var.transition_days
    error_message = "transition_days must be null or a whole number of days greater than 0."
  }

  validation {
    # S3 refuses transitions to STANDARD_IA earlier than 30 days after creation.
    condition     = var.transition_days == null ? true : var.transition_storage_class != "STANDARD_IA" || var.transition_days >= 30
    error_message = "transitions to STANDARD_IA need transition_days >= 30."
  }
}

variable "transition_storage_class" {
  description = "Storage class for transition_days. Only classes that serve GetObject without a restore are offered, so the verifier can always read every segment."
  type        = string
  default     = "GLACIER_IR"

  validation {
    condition     = contains(["STANDARD_IA", "INTELLIGENT_TIERING", "GLACIER_IR"], var.transition_storage_class)
    error_message = "transition_storage_class must be STANDARD_IA, INTELLIGENT_TIERING or GLACIER_IR."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Expire noncurrent object versions this many days after they become noncurrent. Null: keep them. Must be >= retention_days so that no rule ever targets a version that is still locked."
  type        = number
  default     = null

  validation {
    condition     = var.noncurrent_version_expiration_days == null ? true : var.noncurrent_version_expiration_days >= var.retention_days
    error_message = "noncurrent_version_expiration_days must be null or >= retention_days."
  }
}

variable "access_log_retention_days" {
  description = "Days to keep S3 server access logs of the archive bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_retention_days > 0 && floor(var.access_log_retention_days) == var.access_log_retention_days
    error_message = "access_log_retention_days must be a whole number of days greater than 0."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a KMS key scheduled for deletion is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be from 7 to 30."
  }
}

variable "tags" {
  description = "Tags for every taggable resource."
  type        = map(string)
  default     = {}
}
