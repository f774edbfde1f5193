"""Store: the one S3 code path, multipart uploads and the store's layout."""
