"""Provenance: what made a release (pipeline version, DAG bundle or git commit, run), as the manifest records it.

:func:`of_run` builds the manifest's ``provenance`` object from a run's :class:`~pipeline.config.RunConfig`. The
DAG fills the config's ``bundle_name`` and ``bundle_version`` from its task context (:func:`from_airflow_context`);
when no bundle version is known (``cxr run``, ``dag.test()``, a bundle without versions such as Airflow's local
``dags-folder``) the code is named by its git commit instead (:func:`code_commit`). A review, when the run had one,
is added at approval as ``provenance.review`` (:meth:`pipeline.review.decision.Decision.to_dict`).

A top-level module, because ``publish`` (the manifest), ``run`` (the DAG's tasks) and ``cli`` all use it and the stage
order lets ``publish`` import no ``run``. Standard library only, and no Airflow: the readers' client imports
:mod:`pipeline.publish.manifest`, which uses this.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pipeline

if TYPE_CHECKING:
    from pipeline.config import RunConfig

log = logging.getLogger(__name__)

#: The commit an image was built from, for code that is not in a git work tree (set it at build time).
CODE_COMMIT_ENV = "CXR_CODE_COMMIT"
#: How long one git command may take before the commit counts as unknown.
GIT_TIMEOUT_S = 5.0
PACKAGE_DIR = Path(pipeline.__file__).resolve().parent


def _git(start: Path, *args: str) -> str | None:
    """The output of ``git -C start ARGS``, or None when git is missing, fails or takes too long."""
    try:
        done = subprocess.run(
            ["git", "-C", str(start), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("git %s in %s: %s", " ".join(args), start, exc)
        return None
    return done.stdout if done.returncode == 0 else None


def _git_commit(start: Path) -> dict[str, Any] | None:
    # The directory must hold tracked files: a package installed into an ignored folder of some other work tree
    # (a .venv inside a checkout) is not the code of that work tree's commit.
    if _git(start, "ls-files", "--error-unmatch", "--", ".") is None:
        return None
    sha = _git(start, "rev-parse", "--verify", "HEAD")
    # Untracked files do not count, as for `git describe --dirty`: stray files in a checkout are not the code.
    status = _git(start, "status", "--porcelain", "--untracked-files=no")
    if sha is None or status is None:
        return None
    return {"commit": sha.strip(), "dirty": bool(status.strip())}


def code_commit(start: Path | None = None) -> dict[str, Any] | None:
    """The git commit the code came from: ``{"commit": sha, "dirty": bool}``, or None when it is unknown.

    When ``start`` (default: the ``pipeline`` package's directory) holds tracked files of a git work tree, the
    commit is that work tree's ``HEAD`` and ``dirty`` says whether tracked files differ from it. Otherwise, as in
    an image built from a commit (which has no ``.git``), it is ``$CXR_CODE_COMMIT``, which the build sets
    (``--build-arg``/``ENV CXR_CODE_COMMIT=$(git rev-parse HEAD)``), with ``dirty`` False: the build's claim.
    A missing ``git`` program, or one that fails or hangs (over :data:`GIT_TIMEOUT_S`), counts as no work tree.
    """
    found = _git_commit((start or PACKAGE_DIR).resolve())
    if found is not None:
        return found
    from_env = os.environ.get(CODE_COMMIT_ENV, "").strip()
    return {"commit": from_env, "dirty": False} if from_env else None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def from_airflow_context(context: Mapping[str, Any]) -> dict[str, str | None]:
    """The DAG bundle a task runs from: ``{"bundle_name", "bundle_version"}`` (None each when not known).

    Airflow 3.3's worker puts the bundle it loaded the DAG from on the task instance: ``context["ti"]`` is a
    ``RuntimeTaskInstance`` whose ``bundle_instance`` (a ``BaseDagBundle``) has ``name`` and ``version``; the
    version is the one the run was created with (a git bundle's commit), None for bundles without versions
    (``dags-folder``). A versioned bundle run without a pinned version (``disable_bundle_versioning``) reports the
    version it has checked out (``get_current_version()``). ``dag.test()`` runs tasks in-process without a bundle:
    both are None. Duck-typed, so this module imports no Airflow.
    """
    ti = context.get("ti") or context.get("task_instance")
    bundle = getattr(ti, "bundle_instance", None)
    if bundle is None:
        return {"bundle_name": None, "bundle_version": None}
    version = getattr(bundle, "version", None)
    if version is None and getattr(bundle, "supports_versioning", False):
        version = bundle.get_current_version()
    return {"bundle_name": _text(getattr(bundle, "name", None)), "bundle_version": _text(version)}


def orchestrator(cfg: RunConfig) -> str:
    """``airflow`` for a run of the DAG (it always passes a logical date, or the run's ``run_after``), else ``cli``."""
    return "airflow" if cfg.bundle_name is not None or cfg.logical_date is not None else "cli"


def of_run(cfg: RunConfig) -> dict[str, Any]:
    """The manifest's ``provenance``: pipeline version, DAG bundle, code commit, run id and logical date.

    ``code`` is :func:`code_commit` when no bundle version names the code, else None (git is not asked).
    """
    return {
        "pipeline_version": pipeline.__version__,
        "orchestrator": orchestrator(cfg),
        "run_id": cfg.run_id,
        "logical_date": cfg.logical_date,
        "bundle_name": cfg.bundle_name,
        "bundle_version": cfg.bundle_version,
        "code": code_commit() if cfg.bundle_version is None else None,
    }
