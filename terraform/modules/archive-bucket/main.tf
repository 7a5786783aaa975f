# The archive bucket: Object Lock in COMPLIANCE mode, versioned, SSE-KMS with a customer
# managed key, no public access, no ACLs, access-logged to a separate bucket (logging.tf).
# Bucket policies are in bucket_policy.tf, KMS keys in kms.tf, IAM in iam.tf and the
# optional cross-region replica in replication.tf.

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
  writer_objects_arn = "${aws_s3_bucket.archive.arn}/${local.object_prefix}*"

  writer_principal_arns  = concat(var.writer_principal_arns, aws_iam_role.writer[*].arn)
  auditor_principal_arns = concat(var.auditor_principal_arns, aws_iam_role.auditor[*].arn)

  # One element when a break-glass principal is configured, none otherwise; drives the
  # dynamic "condition" blocks that exempt it from the bucket policies' Deny statements.
  break_glass = var.break_glass_principal_arn == null ? [] : [var.break_glass_principal_arn]
}

resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV2_AWS_62:No event notifications: nothing consumes them; the verifier lists and reads the bucket on its own schedule.
  bucket = var.bucket_name
  # Can only be chosen when the bucket is created.
  object_lock_enabled = true
  tags                = var.tags
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    default_retention {
      # COMPLIANCE: no principal, including the root user, can delete a locked version or
      # shorten its retention until it expires. This cannot be undone for written objects.
      mode = "COMPLIANCE"
      days = var.retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.sse.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket = aws_s3_bucket.archive.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_logging" "archive" {
  bucket        = aws_s3_bucket.archive.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "s3/${var.bucket_name}/"

  depends_on = [aws_s3_bucket_policy.access_logs]
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  #checkov:skip=CKV_AWS_300:The first rule aborts incomplete uploads bucket-wide; checkov drops static "rule" blocks when dynamic ones exist (tests/terraform asserts the rule).
  bucket = aws_s3_bucket.archive.id

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
        prefix = local.object_prefix
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
      # Never earlier than the retention (validated in variables.tf and checked again below):
      # a version becomes noncurrent no earlier than it was written, so this rule cannot
      # target a version that is still locked.
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

  depends_on = [aws_s3_bucket_versioning.archive]
}
