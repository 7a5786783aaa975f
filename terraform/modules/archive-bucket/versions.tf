terraform {
  # 1.9 or later: variable validations below refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
      # The replica bucket and its KMS key are created through aws.replica. Callers
      # must pass it even with replication off (passing the default provider is fine).
      configuration_aliases = [aws.replica]
    }
  }
}
