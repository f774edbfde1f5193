"""One-off, scripted move of pipeline/ into subpackages by stage (issue 13). Run from the repository root.

Moves every module with ``git mv`` and rewrites every reference to it (imports, dotted names in strings,
docstrings, Makefile, setup.cfg) in one pass, so the tree is never half moved.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

MOVES: dict[str, str] = {
    # ingest: sources, remote reads, archives, extract
    "sources": "ingest.sources",
    "remote": "ingest.remote",
    "remote_http": "ingest.remote_http",
    "rangefile": "ingest.rangefile",
    "archives": "ingest.archives",
    "extract": "ingest.extract",
    # curate: metadata variants, normalising, suites, validation, Data Docs
    "metadata": "curate.metadata",
    "normalise": "curate.normalise",
    "suites": "curate.suites",
    "validate": "curate.validate",
    "datadocs": "curate.datadocs",
    "curate": "curate.curation",
    # plan: cross-checks, splits, statistics, the plan, the dry run
    "crosscheck": "plan.crosscheck",
    "split": "plan.split",
    "stats": "plan.stats",
    "plan": "plan.planning",
    "preview": "plan.preview",
    # convert: PNG pixels, tar and Parquet writers
    "convert": "convert.units",
    "tarstream": "convert.tarstream",
    # publish: versions, finishing, accounting, card, Croissant, diff
    "publish": "publish.versions",
    "release": "publish.finish",
    "accounting": "publish.accounting",
    "card": "publish.card",
    "card_plots": "publish.card_plots",
    "croissant": "publish.croissant",
    "diff": "publish.diff",
    # read: the consumer client
    "client": "read.client",
    # store: the one S3 code path
    "storage": "store.storage",
    "multipart": "store.multipart",
    "workspace": "store.workspace",
    # run: what each Airflow task calls
    "tasks": "run.tasks",
    "connections": "run.connections",
    # cli
    "cli": "cli.main",
    "cli_releases": "cli.releases",
    # local tooling, out of the product
    "stack": "dev.stack",
    "synth": "dev.synth",
    "demo": "dev.demo",
    "airflow_local": "dev.airflow_local",
    # format knowledge shared by ingest and convert stays at the top
    "images": "png",
}
PACKAGES = {
    "ingest": "Ingest: find the source files, read them (local, S3, HTTP), stream archives, land images in raw/.",
    "curate": "Curate: recognise metadata variants, normalise them, validate them with Great Expectations.",
    "plan": "Plan: join images with metadata, assign patient-level splits, statistics, the plan and the dry run.",
    "convert": "Convert: turn a planned unit into Parquet rows and a WebDataset shard.",
    "publish": "Publish: claim a version, finish and verify a release, its card, Croissant and diff.",
    "read": "Read: the consumer client for published releases.",
    "store": "Store: the one S3 code path, multipart uploads and the store's layout.",
    "run": "Run: what each Airflow task calls, and the run's summaries.",
    "cli": "The ``cxr`` command line.",
    "dev": "Local tooling, not part of the product: local S3 stack, synthetic mirror, demo, local Airflow.",
}
# tests mirror the package: unit tests by subpackage, integration tests by stage, reliability tests together
TEST_MOVES: dict[str, str] = {
    "unit.test_archives": "unit.ingest.test_archives",
    "unit.test_sources": "unit.ingest.test_sources",
    "unit.test_metadata": "unit.curate.test_metadata",
    "unit.test_validate": "unit.curate.test_validate",
    "unit.test_datadocs": "unit.curate.test_datadocs",
    "unit.test_crosscheck": "unit.plan.test_crosscheck",
    "unit.test_split": "unit.plan.test_split",
    "unit.test_stats": "unit.plan.test_stats",
    "unit.test_convert_pool": "unit.convert.test_pool",
    "unit.test_image_decoding": "unit.convert.test_pixels",
    "unit.test_tar_stream": "unit.convert.test_tarstream",
    "unit.test_card": "unit.publish.test_card",
    "unit.test_diff": "unit.publish.test_diff",
    "unit.test_connections": "unit.run.test_connections",
    "unit.test_cli": "unit.cli.test_main",
    "unit.test_stack": "unit.dev.test_stack",
    "unit.test_synth": "unit.dev.test_synth",
    "unit.test_images": "unit.test_png",
    "integration.test_ingest": "integration.ingest.test_ingest",
    "integration.test_raw_zone": "integration.ingest.test_raw_zone",
    "integration.test_metadata_release": "integration.curate.test_metadata_release",
    "integration.test_auxiliary_rows": "integration.curate.test_auxiliary_rows",
    "integration.test_split_stability": "integration.plan.test_split_stability",
    "integration.test_convert": "integration.convert.test_convert",
    "integration.test_undecodable_images": "integration.convert.test_undecodable_images",
    "integration.test_publish": "integration.publish.test_publish",
    "integration.test_release_card": "integration.publish.test_release_card",
    "integration.test_consumers": "integration.read.test_consumers",
    "integration.test_multipart": "integration.store.test_multipart",
    "integration.test_store_locations": "integration.store.test_store_locations",
    "integration.test_cli_run": "integration.cli.test_cli_run",
    "integration.test_dag_end_to_end": "integration.airflow.test_dag_end_to_end",
    "integration.test_scheduler": "integration.airflow.test_scheduler",
    "integration.test_celery": "integration.airflow.test_celery",
    "integration.test_backfill": "integration.airflow.test_backfill",
    "integration.test_ui_browser": "integration.airflow.test_ui_browser",
    "integration.test_docker_config": "integration.airflow.test_docker_config",
    "integration.reliability_figures": "reliability.figures",
    "integration.test_reliability_access": "reliability.test_access",
    "integration.test_reliability_accounting": "reliability.test_accounting",
    "integration.test_reliability_concurrency": "reliability.test_concurrency",
    "integration.test_reliability_crash": "reliability.test_crash",
    "integration.test_reliability_hostile": "reliability.test_hostile",
    "integration.test_reliability_outage": "reliability.test_outage",
    "integration.test_reliability_no_traceback": "reliability.test_no_traceback",
}
ROOT = Path.cwd()
TEXT_GLOBS = ("pipeline/**/*.py", "tests/**/*.py", "dags/*.py", "benchmarks/**/*.py", "scripts/*", "*.md")
EXTRA_FILES = ("Makefile", "setup.cfg", "docker/Dockerfile", "docker/compose.yaml", ".ci/run")


def new_name(old: str) -> str:
    return "pipeline." + MOVES[old]


def _split_names(names: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for raw in names.replace("(", "").replace(")", "").split(","):
        part = raw.strip()
        if not part or part.startswith("#"):
            continue
        bits = part.split()
        out.append((bits[0], bits[2] if len(bits) == 3 and bits[1] == "as" else None))
    return out


FROM_PIPELINE = re.compile(r"^(?P<indent>[ \t]*)from pipeline import (?P<names>\([^)]*\)|[^\n]*)", re.M)


def rewrite_from_pipeline(match: re.Match[str]) -> str:
    indent = match["indent"]
    names = re.sub(r"#[^\n]*", "", match["names"])
    lines: list[str] = []
    keep: list[str] = []
    for name, alias in _split_names(names):
        if name in MOVES:
            parent, _, leaf = new_name(name).rpartition(".")
            local = alias or name
            lines.append(f"{indent}from {parent} import {leaf}" + (f" as {local}" if local != leaf else ""))
        else:
            keep.append(name + (f" as {alias}" if alias else ""))
    if keep:
        lines.insert(0, f"{indent}from pipeline import {', '.join(keep)}")
    return "\n".join(lines)


DOTTED = re.compile(r"\bpipeline\.(?P<old>[a-z_]+)\b")


def rewrite_dotted(match: re.Match[str]) -> str:
    old = match["old"]
    return new_name(old) if old in MOVES else match[0]


TEST_DOTTED = re.compile(r"\btests([./])(?P<old>(?:unit|integration)[./][a-z_]+)\b")


def rewrite_test_dotted(match: re.Match[str]) -> str:
    sep, old = match[1], match["old"].replace("/", ".")
    if old not in TEST_MOVES:
        return match[0]
    return "tests" + sep + TEST_MOVES[old].replace(".", sep)


def rewrite(text: str) -> str:
    text = TEST_DOTTED.sub(rewrite_test_dotted, text)
    # dotted names first: the ``from pipeline import x`` rewrite produces dotted names that must stay as they are
    text = DOTTED.sub(rewrite_dotted, text)
    return FROM_PIPELINE.sub(rewrite_from_pipeline, text)


def files() -> list[Path]:
    found = {p for glob in TEXT_GLOBS for p in ROOT.glob(glob) if p.is_file()}
    found |= {ROOT / f for f in EXTRA_FILES if (ROOT / f).is_file()}
    return sorted(p for p in found if ".venv" not in p.parts and p.name != "restructure_13.py")


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True)


def move() -> None:
    for pkg, doc in PACKAGES.items():
        folder = ROOT / "pipeline" / pkg
        folder.mkdir(exist_ok=True)
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{doc}"""\n')
    for old, new in TEST_MOVES.items():
        src, dest = ROOT / "tests" / Path(*old.split(".")), ROOT / "tests" / Path(*new.split("."))
        if src.with_suffix(".py").is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            git("mv", str(src) + ".py", str(dest) + ".py")
    for folder in [ROOT / "tests", *(p for p in (ROOT / "tests").rglob("*") if p.is_dir())]:
        if folder.name not in ("data", "__pycache__") and "data" not in folder.relative_to(ROOT).parts:
            (folder / "__init__.py").touch()
    for old, new in MOVES.items():
        src = ROOT / "pipeline" / old
        dest = ROOT / "pipeline" / Path(*new.split("."))
        if src.with_suffix(".py").is_file():  # a module (its new package folder may already exist)
            git("mv", str(src) + ".py", str(dest) + ".py")
        else:
            git("mv", str(src), str(dest))


def deeper(path: Path, text: str) -> str:
    """Test files now one folder deeper reach the repository root one parent further up."""
    rel = path.relative_to(ROOT).parts
    if rel[0] == "tests" and len(rel) == 4:
        return text.replace("Path(__file__).resolve().parents[2]", "Path(__file__).resolve().parents[3]")
    return text


def main() -> int:
    move()
    for path in files():
        before = path.read_text()
        after = deeper(path, rewrite(before))
        if after != before:
            path.write_text(after)
    git("add", "-A", "pipeline", "tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
