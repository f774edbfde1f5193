"""Curate: turn the metadata files of a source into normalised, validated tables, with every defect accounted for.

Owns: the header variants of the NIH metadata files and recognising them (``variants``), reading their bytes
(``reading``), loading and normalising the tables (``metadata``, ``normalise``), the expectation-suite format and
running it with Great Expectations (``suites``), what is checked in each file and how severe a failure is
(``validate``, ``cxr validate``), the row quarantine of the auxiliary files (``quarantine``), the validation
outcomes and report (``outcomes``), offline Data Docs (``datadocs``) and the curate stage of a run, which keeps
all of it in the run's workspace (``curation``).

May use: the foundation (top-level ``pipeline`` modules: ``errors``, ``nih``, ...), ``pipeline.store`` (writing
the workspace) and ``pipeline.ingest`` (source listings, reading source files and their size limits). Nothing
here imports ``plan`` or any later stage.
"""
