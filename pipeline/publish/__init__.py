"""Publish: claim a version, finish and verify a release, its card, Croissant and diff."""
