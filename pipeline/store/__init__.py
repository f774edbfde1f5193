"""Store: the one S3 code path (the client factory, retries, error mapping), multipart uploads and the store's layout.

Modules: :mod:`~pipeline.store.client` (the one S3 client factory), :mod:`~pipeline.store.retry` (retry with
back-off, for every retry loop of the pipeline), :mod:`~pipeline.store.refusals` (what a failed request means),
:mod:`~pipeline.store.storage` (:class:`Store`: objects under one bucket and prefix),
:mod:`~pipeline.store.multipart` (streaming uploads), :mod:`~pipeline.store.tables` (JSON and Parquet objects)
and :mod:`~pipeline.store.layout` (every key of the store: releases, run workspaces, the raw zone).

May use only the foundation modules (:mod:`pipeline.config`, :mod:`pipeline.errors`, :mod:`pipeline.faults`)
and third-party libraries; every other subpackage may use store, store uses none of them.
"""
