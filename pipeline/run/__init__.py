"""Run: what each Airflow task (and ``cxr run``) calls, and what a run says when it ends.

Owns: ``tasks`` (one function per DAG task: build the ``RunConfig`` from the params with
``config_from_params``, call one stage, return a small JSON-able summary; ``run_all`` for a whole run in one
process), ``connections`` (the store's settings from an Airflow connection's fields, without Airflow) and
``summary`` (the sentences the DAG's callbacks, the consumer DAG and ``cxr run`` print; standard library only).

May use: the foundation (``pipeline.config``, ``errors``, ``options``, ...) and every stage below it (``store``,
``ingest``, ``curate``, ``plan``, ``convert``, ``publish``); not ``read``'s consumer client, ``cli`` or ``dev``.
``summary`` imports only the standard library and stdlib-only modules (``pipeline.plan.kinds``): the dag-processor
imports it.
"""
