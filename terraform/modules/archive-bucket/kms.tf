# The asymmetric ECC_NIST_P256 key the agent signs segment seals with (ECDSA_SHA_256, the
# "ecdsa-p256-sha256" algorithm of audit_archiver.core.signing). The buckets' encryption
# keys belong to the locked-bucket module.

resource "aws_kms_key" "signing" {
  description              = "audit-archiver ${var.bucket_name}: segment seal signing"
  key_usage                = "SIGN_VERIFY"
  customer_master_key_spec = "ECC_NIST_P256"
  # KMS cannot rotate asymmetric keys: rotate by creating a new key, adding its public key
  # to the verifier's trusted keys and switching the agent over (seals name their key id).
  enable_key_rotation     = false
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.signing_key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "signing" {
  name          = "alias/${var.bucket_name}-signing"
  target_key_id = aws_kms_key.signing.key_id
}

# Unlike the SSE key, this policy does not hand the key to IAM: the account may administer
# the key but gets neither kms:Sign, kms:Verify nor kms:CreateGrant, so no IAM policy can
# grant signing. Only the writers named here may sign, and only with ECDSA_SHA_256;
# auditors may read the public key and verify.
data "aws_iam_policy_document" "signing_key" {
  #checkov:skip=CKV_AWS_109:Key policy: "*" as resource means this key; every statement names its principals.
  #checkov:skip=CKV_AWS_111:Key policy: "*" as resource means this key; every statement names its principals.
  #checkov:skip=CKV_AWS_356:Key policy: "*" as resource means this key; every statement names its principals.
  statement {
    sid    = "KeyAdministration"
    effect = "Allow"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:DeleteAlias",
      "kms:Describe*",
      "kms:DisableKey",
      "kms:EnableKey",
      "kms:Get*",
      "kms:List*",
      "kms:PutKeyPolicy",
      "kms:RetireGrant",
      "kms:RevokeGrant",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.root_arn]
    }
  }

  dynamic "statement" {
    for_each = length(local.writer_principal_arns) > 0 ? [local.writer_principal_arns] : []
    content {
      sid       = "WriterSign"
      effect    = "Allow"
      actions   = ["kms:Sign"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }

      condition {
        test     = "StringEquals"
        variable = "kms:SigningAlgorithm"
        values   = ["ECDSA_SHA_256"]
      }
    }
  }

  dynamic "statement" {
    # The agent's KMS signer reads the public key once to compute the key id it puts in
    # every seal (SHA-256 of the SubjectPublicKeyInfo); the public key is not a secret.
    for_each = length(local.writer_principal_arns) > 0 ? [local.writer_principal_arns] : []
    content {
      sid       = "WriterReadPublicKey"
      effect    = "Allow"
      actions   = ["kms:GetPublicKey"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }

  dynamic "statement" {
    for_each = length(local.auditor_principal_arns) > 0 ? [local.auditor_principal_arns] : []
    content {
      sid       = "AuditorVerify"
      effect    = "Allow"
      actions   = ["kms:DescribeKey", "kms:GetPublicKey", "kms:Verify"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }
}
