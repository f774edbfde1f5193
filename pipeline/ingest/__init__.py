"""Ingest: find the source files, read them (local, S3, HTTP), stream archives, land images in raw/."""
