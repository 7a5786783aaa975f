output "bucket_id" {
  description = "Name of the Object Lock bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the Object Lock bucket."
  value       = aws_s3_bucket.this.arn
}

output "sse_kms_key_arn" {
  description = "ARN of the KMS key of the bucket's default encryption."
  value       = aws_kms_key.sse.arn
}

output "access_log_bucket_id" {
  description = "Name of the bucket receiving the access logs."
  value       = aws_s3_bucket.access_logs.id
}
