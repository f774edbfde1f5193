"""Airflow on this machine without importing it: settings, database, components, REST client, one installation.

Used by ``cxr demo``, ``cxr ui``, ``python -m pipeline.dev.airflow`` (``make scheduler`` / ``make celery``) and the
test-suite. Everything binds to 127.0.0.1; the metadata database is SQLite under the Airflow home unless
:class:`~pipeline.dev.airflow.settings.CelerySettings` say PostgreSQL (and Redis as the Celery broker).

One job per module: :mod:`.settings` (the environment of an Airflow home), :mod:`.db` (database admin),
:mod:`.components` (which ``airflow`` commands run as which processes), :mod:`.rest` (the REST API v2 client),
:mod:`.installation` (a whole installation as a context manager), ``__main__`` (``python -m``). Process groups are
:mod:`pipeline.dev.processes`'s, ports :mod:`pipeline.dev.ports`'s. Nothing here imports :mod:`pipeline.dev.demo`
except ``__main__``.
"""
