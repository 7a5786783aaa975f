# IAM policies for the two kinds of principal: the writer (the agent) and the auditor (the
# verifier and `audit-archiver bucket check`). Roles carrying them are optional.

locals {
  # ListBucket/ListBucketVersions filtered to the writer's prefix; no filter at the root.
  writer_list_prefixes = var.prefix == "" ? [] : [var.prefix, "${var.prefix}/*"]

  auditor_bucket_arns  = concat([module.archive_bucket.bucket_arn], module.replica_bucket[*].bucket_arn)
  auditor_sse_key_arns = concat([module.archive_bucket.sse_kms_key_arn], module.replica_bucket[*].sse_kms_key_arn)
  auditor_kms_via_services = concat(
    ["s3.${local.region}.amazonaws.com"],
    local.replicate ? ["s3.${var.replica_region}.amazonaws.com"] : [],
  )
}

data "aws_iam_policy_document" "writer" {
  statement {
    # s3:PutObjectRetention is needed to send explicit Object Lock headers on a put; the
    # bucket policy only lets them lengthen retention, in COMPLIANCE mode.
    sid       = "WriteSegments"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"]
    resources = [local.writer_objects_arn]
  }

  statement {
    # Stream recovery: after a restart the agent reads the last sealed segment of its
    # streams to continue the hash chain.
    sid       = "ReadOwnSegments"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.writer_objects_arn]
  }

  statement {
    sid       = "ListOwnPrefix"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [module.archive_bucket.bucket_arn]

    dynamic "condition" {
      for_each = length(local.writer_list_prefixes) > 0 ? [local.writer_list_prefixes] : []
      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = condition.value
      }
    }
  }

  statement {
    sid       = "ReadLockConfiguration"
    effect    = "Allow"
    actions   = ["s3:GetBucketObjectLockConfiguration"]
    resources = [module.archive_bucket.bucket_arn]
  }

  statement {
    sid       = "SignSeals"
    effect    = "Allow"
    actions   = ["kms:Sign"]
    resources = [aws_kms_key.signing.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:SigningAlgorithm"
      values   = ["ECDSA_SHA_256"]
    }
  }

  statement {
    # The signer computes its key id from the public key (see kms.tf).
    sid       = "ReadSigningPublicKey"
    effect    = "Allow"
    actions   = ["kms:GetPublicKey"]
    resources = [aws_kms_key.signing.arn]
  }

  statement {
    sid       = "UseBucketEncryptionKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [module.archive_bucket.sse_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    # Explicit, so that no other policy attached to the agent's principal can add them.
    sid    = "DenyDestructiveActions"
    effect = "Deny"
    actions = [
      "s3:BypassGovernanceRetention",
      "s3:DeleteBucket",
      "s3:DeleteBucketPolicy",
      "s3:DeleteObject*",
      "s3:PutBucketObjectLockConfiguration",
      "s3:PutBucketPolicy",
      "s3:PutBucketVersioning",
      "s3:PutLifecycleConfiguration",
    ]
    resources = [module.archive_bucket.bucket_arn, "${module.archive_bucket.bucket_arn}/*"]
  }
}

resource "aws_iam_policy" "writer" {
  name        = "${var.bucket_name}-writer"
  description = "audit-archiver agent: write and recover segments under ${local.object_prefix}*, sign seals"
  policy      = data.aws_iam_policy_document.writer.json
  tags        = var.tags
}

# Read-only: every action is a Get/List on S3 or a key read/verify on KMS. It covers the
# verifier and what `audit-archiver bucket check` reads (Object Lock, versioning,
# encryption, public access block, ownership controls, bucket policy).
data "aws_iam_policy_document" "auditor" {
  statement {
    sid    = "ReadSegments"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:GetObjectAttributes",
      "s3:GetObjectLegalHold",
      "s3:GetObjectRetention",
      "s3:GetObjectVersion",
      "s3:GetObjectVersionAttributes",
    ]
    resources = [for arn in local.auditor_bucket_arns : "${arn}/*"]
  }

  statement {
    sid       = "ListArchive"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = local.auditor_bucket_arns
  }

  statement {
    sid    = "ReadBucketSettings"
    effect = "Allow"
    actions = [
      "s3:GetBucketLocation",
      "s3:GetBucketObjectLockConfiguration",
      "s3:GetBucketOwnershipControls",
      "s3:GetBucketPolicy",
      "s3:GetBucketPublicAccessBlock",
      "s3:GetBucketVersioning",
      "s3:GetEncryptionConfiguration",
    ]
    resources = local.auditor_bucket_arns
  }

  statement {
    sid       = "VerifySeals"
    effect    = "Allow"
    actions   = ["kms:DescribeKey", "kms:GetPublicKey", "kms:Verify"]
    resources = [aws_kms_key.signing.arn]
  }

  statement {
    sid       = "DecryptSegments"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = local.auditor_sse_key_arns

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.auditor_kms_via_services
    }
  }
}

resource "aws_iam_policy" "auditor" {
  name        = "${var.bucket_name}-auditor"
  description = "audit-archiver verifier: read-only access to the archive and its keys"
  policy      = data.aws_iam_policy_document.auditor.json
  tags        = var.tags
}

data "aws_iam_policy_document" "writer_trust" {
  count = var.create_roles ? 1 : 0

  statement {
    sid     = "AssumeWriterRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = var.writer_trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "writer" {
  count = var.create_roles ? 1 : 0

  name               = "${var.bucket_name}-writer"
  description        = "audit-archiver agent for ${var.bucket_name}"
  assume_role_policy = data.aws_iam_policy_document.writer_trust[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "writer" {
  count = var.create_roles ? 1 : 0

  role       = aws_iam_role.writer[0].name
  policy_arn = aws_iam_policy.writer.arn
}

data "aws_iam_policy_document" "auditor_trust" {
  count = var.create_roles ? 1 : 0

  statement {
    sid     = "AssumeAuditorRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = var.auditor_trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "auditor" {
  count = var.create_roles ? 1 : 0

  name               = "${var.bucket_name}-auditor"
  description        = "audit-archiver verifier for ${var.bucket_name}"
  assume_role_policy = data.aws_iam_policy_document.auditor_trust[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "auditor" {
  count = var.create_roles ? 1 : 0

  role       = aws_iam_role.auditor[0].name
  policy_arn = aws_iam_policy.auditor.arn
}
