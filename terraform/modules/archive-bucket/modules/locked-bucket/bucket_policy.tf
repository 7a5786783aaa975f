# Bucket policy of the locked bucket. Deny statements only: access is granted by the
# IAM policies of the archive-bucket module (iam.tf), and a Deny here holds even against an over-broad IAM policy.
#
# Condition keys used below, all from the S3 and IAM global condition key lists:
# aws:SecureTransport, aws:PrincipalArn, s3:if-none-match, s3:ObjectCreationOperation,
# s3:object-lock-mode, s3:object-lock-remaining-retention-days,
# s3:x-amz-server-side-encryption, s3:x-amz-server-side-encryption-aws-kms-key-id.
#
# Not expressible in a bucket policy: requiring a SHA-256 checksum. S3 has no condition
# key for the x-amz-checksum-* or x-amz-sdk-checksum-algorithm headers (s3:x-amz-content-sha256
# only tells signed from UNSIGNED-PAYLOAD bodies, and botocore sends UNSIGNED-PAYLOAD over
# HTTPS by default, so requiring it would lock out the default client). What holds instead:
# S3 refuses a body that does not match a checksum the client sends (BadDigest), S3 itself
# requires Content-MD5 or a checksum header on every put that carries Object Lock
# retention, and the agent's seals carry the SHA-256 of every segment, which the verifier
# checks against the bytes as stored.

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

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
    # Locked versions cannot be deleted anyway; this also stops delete markers, which
    # would hide segments from plain listings, and deletion after retention ends.
    sid       = "DenyObjectDeletion"
    effect    = "Deny"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = ["${aws_s3_bucket.this.arn}/*"]

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
    # Shortening GOVERNANCE retention needs s3:BypassGovernanceRetention (COMPLIANCE
    # retention cannot be shortened at all); the rest would weaken the bucket itself.
    sid    = "DenyProtectionChanges"
    effect = "Deny"
    actions = [
      "s3:BypassGovernanceRetention",
      "s3:DeleteBucketPolicy",
      "s3:PutBucketObjectLockConfiguration",
      "s3:PutBucketPolicy",
      "s3:PutBucketVersioning",
    ]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

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
    # Segments are write-once: every PutObject and CompleteMultipartUpload must carry
    # If-None-Match, so an existing key is never overwritten by a new version.
    # s3:ObjectCreationOperation exempts CreateMultipartUpload and UploadPart, which
    # authorize as s3:PutObject but cannot carry the header. CopyObject into the bucket
    # is refused as a consequence (S3 does not support conditional copies).
    sid       = "DenyUnconditionalWrites"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }

    condition {
      test     = "Bool"
      variable = "s3:ObjectCreationOperation"
      values   = ["true"]
    }
  }

  statement {
    # A put may name its own lock mode (it must then hold s3:PutObjectRetention); it may
    # not choose GOVERNANCE, which a holder of s3:BypassGovernanceRetention could undo.
    sid       = "DenyNonComplianceLockMode"
    effect    = "Deny"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"]
    resources = ["${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:object-lock-mode"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:object-lock-mode"
      values   = ["COMPLIANCE"]
    }
  }

  statement {
    # An explicit retain-until date replaces the default retention, so without this a
    # writer could lock a segment for one day instead of retention_days. One day of slack
    # for the time between the client computing the date and S3 evaluating the request.
    # A put without an explicit date gets the default retention and is not affected.
    sid       = "DenyShortRetention"
    effect    = "Deny"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"]
    resources = ["${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:object-lock-remaining-retention-days"
      values   = [tostring(var.retention_days - 1)]
    }
  }

  statement {
    # A put may leave encryption to the bucket default; it may not ask for another kind.
    sid       = "DenyNonKmsEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    # Nor another KMS key: a key the writer controls could later be disabled or deleted,
    # leaving locked segments unreadable. Clients that name a key must use the key ARN.
    sid       = "DenyOtherKmsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.sse.arn]
    }
  }

  dynamic "statement" {
    # A replica receives objects only through S3 replication (s3:ReplicateObject), which
    # these actions do not cover: nobody else writes there.
    for_each = var.replication_target ? [true] : []
    content {
      sid       = "DenyDirectWrites"
      effect    = "Deny"
      actions   = ["s3:PutObject", "s3:PutObjectRetention"]
      resources = ["${aws_s3_bucket.this.arn}/*"]

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
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.this.json

  # The policy forbids changing versioning and the Object Lock configuration, so it goes
  # on last; the public access block must exist first so the policy is checked against it.
  depends_on = [
    aws_s3_bucket_object_lock_configuration.this,
    aws_s3_bucket_public_access_block.this,
    aws_s3_bucket_versioning.this,
  ]
}
