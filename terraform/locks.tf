# Leases for scale-out ingest and exclusive jobs (SCHEMAHUB_LOCKS=dynamodb://TABLE): the
# same definition `schemahub init-cloud` creates (src/schemahub/cloud.py).

resource "aws_dynamodb_table" "locks" {
  name         = "${var.name}-locks"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "lease"

  attribute {
    name = "lease"
    type = "S"
  }

  # Expired run leases disappear by themselves; product leases are conditional-checked
  # on expiry anyway, so TTL's lag (up to days) never matters for correctness.
  ttl {
    attribute_name = "expires_ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.schemahub.arn
  }
}
