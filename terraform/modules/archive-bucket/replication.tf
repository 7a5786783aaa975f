# Optional copy of the archive in a second region (replica_region). The replica is the
# same locked-bucket module as the archive, created through the aws.replica provider: same
# Object Lock retention and hardening, its own KMS key and its own access log bucket (log
# targets must be in the bucket's region). Its bucket policy also refuses direct writes:
# objects arrive only through replication. Everything here has count 0 unless
# replica_region is set.

locals {
  replica_count = local.replicate ? 1 : 0
}

module "replica_bucket" {
  source = "./modules/locked-bucket"
  count  = local.replica_count

  providers = {
    aws = aws.replica
  }

  bucket_name            = "${var.bucket_name}-replica"
  access_log_bucket_name = "${var.bucket_name}-replica-logs"
  object_prefix          = local.object_prefix
  replication_target     = true

  retention_days                     = var.retention_days
  break_glass_principal_arn          = var.break_glass_principal_arn
  kms_deletion_window_days           = var.kms_deletion_window_days
  access_log_retention_days          = var.access_log_retention_days
  transition_days                    = var.transition_days
  transition_storage_class           = var.transition_storage_class
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  tags                               = var.tags
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
    resources = [module.archive_bucket.bucket_arn]
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
    resources = ["${module.archive_bucket.bucket_arn}/*"]
  }

  statement {
    # No s3:ReplicateDelete: delete markers are not replicated (and are denied at the source).
    sid       = "WriteReplicaVersions"
    effect    = "Allow"
    actions   = ["s3:ReplicateObject", "s3:ReplicateTags"]
    resources = ["${module.replica_bucket[0].bucket_arn}/*"]
  }

  statement {
    sid       = "DecryptSource"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [module.archive_bucket.sse_kms_key_arn]

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
    resources = [module.replica_bucket[0].sse_kms_key_arn]

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

  bucket = module.archive_bucket.bucket_id
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
      bucket        = module.replica_bucket[0].bucket_arn
      storage_class = "STANDARD"

      encryption_configuration {
        replica_kms_key_id = module.replica_bucket[0].sse_kms_key_arn
      }
    }
  }

  # Replication needs versioning on both buckets (and the modules' other settings in place).
  depends_on = [
    aws_iam_role_policy_attachment.replication,
    module.archive_bucket,
    module.replica_bucket,
  ]
}
