# Optional copy of the archive in a second region (replica_region). The replica has the same
# Object Lock retention and hardening as the archive, its own KMS key and its own access
# log bucket (log targets must be in the bucket's region). Everything here has count 0
# unless replica_region is set; it is created through the aws.replica provider.

locals {
  replica_count = local.replicate ? 1 : 0
}

resource "aws_kms_key" "replica_sse" {
  count    = local.replica_count
  provider = aws.replica

  description             = "audit-archiver ${var.bucket_name}: S3 default encryption of the replica"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.sse_key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "replica_sse" {
  count    = local.replica_count
  provider = aws.replica

  name          = "alias/${var.bucket_name}-replica-sse"
  target_key_id = aws_kms_key.replica_sse[0].key_id
}

resource "aws_s3_bucket" "replica" {
  count    = local.replica_count
  provider = aws.replica

  #checkov:skip=CKV2_AWS_62:Event notifications are not needed: the replica is only read by the verifier.
  bucket              = "${var.bucket_name}-replica"
  object_lock_enabled = true
  tags                = var.tags
}

resource "aws_s3_bucket_versioning" "replica" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "replica" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica[0].id

  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = var.retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.replica]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.replica_sse[0].arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "replica" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "replica" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_logging" "replica" {
  count    = local.replica_count
  provider = aws.replica

  bucket        = aws_s3_bucket.replica[0].id
  target_bucket = aws_s3_bucket.replica_access_logs[0].id
  target_prefix = "s3/${var.bucket_name}-replica/"

  depends_on = [aws_s3_bucket_policy.replica_access_logs]
}

resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  #checkov:skip=CKV_AWS_300:The first rule aborts incomplete uploads bucket-wide; checkov drops static "rule" blocks when dynamic ones exist (tests/terraform asserts the rule).
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica[0].id

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

  depends_on = [aws_s3_bucket_versioning.replica]
}

# Same Deny statements as the archive bucket, except that nobody but the replication role
# writes here: direct puts are refused outright (replication uses s3:ReplicateObject).
data "aws_iam_policy_document" "replica_bucket" {
  count = local.replica_count

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.replica[0].arn, "${aws_s3_bucket.replica[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyObjectDeletion"
    effect    = "Deny"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = ["${aws_s3_bucket.replica[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    dynamic "condition" {
      for_each = local.break_glass
      content {
        test     = "ArnNotEquals"
        variable = "aws:PrincipalArn"
        values   = [condition.value]
      }
    }
  }

  statement {
    sid    = "DenyProtectionChanges"
    effect = "Deny"
    actions = [
      "s3:BypassGovernanceRetention",
      "s3:DeleteBucketPolicy",
      "s3:PutBucketObjectLockConfiguration",
      "s3:PutBucketPolicy",
      "s3:PutBucketVersioning",
    ]
    resources = [aws_s3_bucket.replica[0].arn, "${aws_s3_bucket.replica[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    dynamic "condition" {
      for_each = local.break_glass
      content {
        test     = "ArnNotEquals"
        variable = "aws:PrincipalArn"
        values   = [condition.value]
      }
    }
  }

  statement {
    sid       = "DenyDirectWrites"
    effect    = "Deny"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"]
    resources = ["${aws_s3_bucket.replica[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    dynamic "condition" {
      for_each = local.break_glass
      content {
        test     = "ArnNotEquals"
        variable = "aws:PrincipalArn"
        values   = [condition.value]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "replica" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica[0].id
  policy = data.aws_iam_policy_document.replica_bucket[0].json

  depends_on = [
    aws_s3_bucket_object_lock_configuration.replica,
    aws_s3_bucket_public_access_block.replica,
    aws_s3_bucket_versioning.replica,
  ]
}

resource "aws_s3_bucket" "replica_access_logs" {
  count    = local.replica_count
  provider = aws.replica

  #checkov:skip=CKV_AWS_144:Access logs of the replica are operational records; the archive itself is what gets replicated.
  #checkov:skip=CKV_AWS_145:Log target uses SSE-S3 (AES256), which S3 server access log delivery supports without a KMS key grant to the logging service.
  #checkov:skip=CKV2_AWS_62:No consumer for event notifications on access logs.
  bucket = "${var.bucket_name}-replica-logs"
  tags   = var.tags
}

resource "aws_s3_bucket_versioning" "replica_access_logs" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica_access_logs[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica_access_logs" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica_access_logs[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "replica_access_logs" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica_access_logs[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "replica_access_logs" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica_access_logs[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "replica_access_logs" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica_access_logs[0].id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.replica_access_logs]
}

data "aws_iam_policy_document" "replica_access_logs" {
  count = local.replica_count

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.replica_access_logs[0].arn, "${aws_s3_bucket.replica_access_logs[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "AllowS3ServerAccessLogDelivery"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.replica_access_logs[0].arn}/s3/${var.bucket_name}-replica/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.replica[0].arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_s3_bucket_policy" "replica_access_logs" {
  count    = local.replica_count
  provider = aws.replica

  bucket = aws_s3_bucket.replica_access_logs[0].id
  policy = data.aws_iam_policy_document.replica_access_logs[0].json

  depends_on = [aws_s3_bucket_public_access_block.replica_access_logs]
}

# The role S3 assumes to copy objects, with their retention and legal hold, to the replica.
data "aws_iam_policy_document" "replication_trust" {
  count = local.replica_count

  statement {
    sid     = "S3AssumesReplicationRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  count = local.replica_count

  name               = "${var.bucket_name}-replication"
  description        = "S3 replication of ${var.bucket_name} to ${var.bucket_name}-replica"
  assume_role_policy = data.aws_iam_policy_document.replication_trust[0].json
  tags               = var.tags
}

data "aws_iam_policy_document" "replication" {
  count = local.replica_count

  statement {
    sid       = "ReadReplicationConfiguration"
    effect    = "Allow"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.archive.arn]
  }

  statement {
    sid    = "ReadSourceVersions"
    effect = "Allow"
    actions = [
      "s3:GetObjectLegalHold",
      "s3:GetObjectRetention",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionTagging",
    ]
    resources = ["${aws_s3_bucket.archive.arn}/*"]
  }

  statement {
    # No s3:ReplicateDelete: delete markers are not replicated (and are denied at the source).
    sid       = "WriteReplicaVersions"
    effect    = "Allow"
    actions   = ["s3:ReplicateObject", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.replica[0].arn}/*"]
  }

  statement {
    sid       = "DecryptSource"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.sse.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "EncryptReplica"
    effect    = "Allow"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.replica_sse[0].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.replica_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "replication" {
  count = local.replica_count

  name        = "${var.bucket_name}-replication"
  description = "S3 replication of ${var.bucket_name} to ${var.bucket_name}-replica"
  policy      = data.aws_iam_policy_document.replication[0].json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "replication" {
  count = local.replica_count

  role       = aws_iam_role.replication[0].name
  policy_arn = aws_iam_policy.replication[0].arn
}

resource "aws_s3_bucket_replication_configuration" "archive" {
  count = local.replica_count

  bucket = aws_s3_bucket.archive.id
  role   = aws_iam_role.replication[0].arn

  rule {
    id     = "replicate-all-objects"
    status = "Enabled"

    # Every object of the bucket, not only the agent's prefix.
    filter {}

    # The archive never deletes; a delete marker (only the break-glass principal can
    # create one) must not hide the copy in the replica.
    delete_marker_replication {
      status = "Disabled"
    }

    # No existing_object_replication: the bucket is created together with this rule, so
    # there is nothing older to copy (for a bucket that had objects first, use S3 Batch
    # Replication).

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
      replica_modifications {
        status = "Enabled"
      }
    }

    destination {
      bucket        = aws_s3_bucket.replica[0].arn
      storage_class = "STANDARD"

      encryption_configuration {
        replica_kms_key_id = aws_kms_key.replica_sse[0].arn
      }
    }
  }

  depends_on = [
    aws_iam_role_policy_attachment.replication,
    aws_s3_bucket_versioning.archive,
    aws_s3_bucket_versioning.replica,
  ]
}
