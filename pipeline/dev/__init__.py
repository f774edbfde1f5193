"""Local tooling, not part of the product: the local S3 stack, the synthetic mirror, the demo, local Airflow.

May use any product subpackage of :mod:`pipeline`. Only :mod:`pipeline.cli` imports it (lazily, inside the
functions of ``cxr stack|synth|demo|ui``); nothing else in :mod:`pipeline` may, so the product never ships or
loads these helpers. Inside: ``stack/`` (SeaweedFS on loopback), ``synth/`` (a synthetic NIH mirror),
``airflow/`` (settings, database, components, REST client, one installation, ``python -m``), ``demo``
(``cxr demo`` and ``cxr ui``), and what they share: ``processes`` (process-group supervision), ``ports`` (the
forbidden ports, free ports) and ``waiting`` (polling with a deadline).
"""
