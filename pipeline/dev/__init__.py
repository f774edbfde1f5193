"""Local tooling, not part of the product: local S3 stack, synthetic mirror, demo, local Airflow."""
