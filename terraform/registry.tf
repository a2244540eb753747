# The image the tasks run: build it from the repository's Dockerfile and push a new tag
# per release (tags are immutable, so a task definition always means one image).

resource "aws_ecr_repository" "schemahub" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.allow_destroy_with_data

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.schemahub.arn
  }
}

resource "aws_ecr_lifecycle_policy" "schemahub" {
  repository = aws_ecr_repository.schemahub.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 10 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 10 }
      action       = { type = "expire" }
    }]
  })
}
