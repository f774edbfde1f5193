"""Curate: recognise metadata variants, normalise them, validate them with Great Expectations."""
