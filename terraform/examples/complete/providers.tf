provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Application = "audit-archiver"
    }
  }
}

# The module creates the replica bucket and its key through this provider.
provider "aws" {
  alias  = "replica"
  region = var.replica_region

  default_tags {
    tags = {
      Application = "audit-archiver"
    }
  }
}
