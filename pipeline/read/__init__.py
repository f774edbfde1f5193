"""Read: the consumer client for published releases."""
