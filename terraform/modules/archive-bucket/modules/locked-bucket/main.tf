# One Object Lock bucket with everything that makes it evidence: COMPLIANCE default
# retention, versioning, SSE-KMS with its own customer managed key, no public access, no
# ACLs, a lifecycle that never expires a locked version, Deny-only bucket policy
# (bucket_policy.tf) and server access logs to a separate bucket (logging.tf).
#
# Internal to archive-bucket, which calls it for the archive bucket and, through the
# aws.replica provider, for the replica: both get exactly the same hardening.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  root_arn   = "arn:${data.aws_partition.current.partition}:iam::${local.account_id}:root"

  # One element when a break-glass principal is configured, none otherwise; drives the
  # dynamic "condition" blocks that exempt it from the bucket policies' Deny statements.
  break_glass = var.break_glass_principal_arn == null ? [] : [var.break_glass_principal_arn]
}

resource "aws_kms_key" "sse" {
  description             = "audit-archiver ${var.bucket_name}: S3 default encryption"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.sse_key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "sse" {
  name          = "alias/${var.bucket_name}-sse"
  target_key_id = aws_kms_key.sse.key_id
}

# Usual delegation to IAM: who may encrypt and decrypt is decided by IAM policies (the
# archive-bucket module's iam.tf), each of them limited to requests that come through S3
# (kms:ViaService).
data "aws_iam_policy_document" "sse_key" {
  #checkov:skip=CKV_AWS_109:Key policy: "*" as resource means this key; the account root is the only principal.
  #checkov:skip=CKV_AWS_111:Key policy: "*" as resource means this key; the account root is the only principal.
  #checkov:skip=CKV_AWS_356:Key policy: "*" as resource means this key; the account root is the only principal.
  statement {
    sid       = "EnableIamPolicies"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.root_arn]
    }
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV2_AWS_62:No event notifications: nothing consumes them; the verifier lists and reads the bucket on its own schedule.
  bucket = var.bucket_name
  # Can only be chosen when the bucket is created.
  object_lock_enabled = true
  tags                = var.tags
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    default_retention {
      # COMPLIANCE: no principal, including the root user, can delete a locked version or
      # shorten its retention until it expires. This cannot be undone for written objects.
      mode = "COMPLIANCE"
      days = var.retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.sse.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_logging" "this" {
  bucket        = aws_s3_bucket.this.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "s3/${var.bucket_name}/"

  depends_on = [aws_s3_bucket_policy.access_logs]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  #checkov:skip=CKV_AWS_300:The first rule aborts incomplete uploads bucket-wide; checkov drops static "rule" blocks when dynamic ones exist (tests/terraform asserts the rule).
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  dynamic "rule" {
    for_each = var.transition_days == null ? [] : [var.transition_days]
    content {
      # A transition changes the storage class only; the Object Lock retention stays.
      id     = "transition-segments"
      status = "Enabled"

      filter {
        prefix = var.object_prefix
      }

      transition {
        days          = rule.value
        storage_class = var.transition_storage_class
      }
    }
  }

  dynamic "rule" {
    for_each = var.noncurrent_version_expiration_days == null ? [] : [var.noncurrent_version_expiration_days]
    content {
      # Never earlier than the retention (validated by archive-bucket and checked again
      # below): a version becomes noncurrent no earlier than it was written, so this rule
      # cannot target a version that is still locked.
      id     = "expire-noncurrent-versions"
      status = "Enabled"

      filter {}

      noncurrent_version_expiration {
        noncurrent_days = rule.value
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.noncurrent_version_expiration_days == null ? true : var.noncurrent_version_expiration_days >= var.retention_days
      error_message = "noncurrent_version_expiration_days must be >= retention_days."
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}
