"""Ingest: find the source files, read them (local, S3, HTTP), stream their archives, land images in raw/.

Owns, module by module (lower ones first; each imports only those above it):

- ``remote``, ``remote_http``: ranged, resuming reads of S3 objects, HTTP(S) files and local files;
- ``rangefile``: a seekable file over those reads that hashes (SHA-256, MD5) as it goes;
- ``files``: one source file (``FileRef``), its fingerprint and identity, opening and reading it, the size
  limits of metadata files (``MAX_FILE_BYTES``, ``check_size``) and md5 checks;
- ``sources``: discovery of a source's files (archive and metadata names, checksum lists);
- ``archives``: members, limits and budgets every archive reader shares, unpacked shard folders;
  ``zips`` and ``tars``: the two archive readers;
- ``rawzone``: the raw zone's records (image keys, manifests, markers, seen index, source manifest);
- ``extract``: landing one archive's images in the raw zone.

May use: the foundation (top-level ``pipeline`` modules: ``config``, ``errors``, ``faults``, ``nih``, ``png``,
``progress``) and ``pipeline.store``. Nothing else; every later stage may use ingest.
"""
