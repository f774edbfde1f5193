"""Decoding workers never re-import the program that started them, and daemonic processes decode in-thread.

Under ``airflow tasks run`` the ``__main__`` module is Airflow's console script; a worker that re-imported it
would import Airflow (and fail). Celery's prefork pool runs tasks in daemonic processes that may not fork.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from tests.reference import IMAGES

SCRIPT = """
import hashlib, os, sys
from pathlib import Path
with open(os.environ["PROBE_LOG"], "a") as fh:
    fh.write("imported\\n")
if __name__ == "__main__":
    from pipeline.convert import pool
    data = Path(sys.argv[1]).read_bytes()
    rows = [{"mode": "L", "sha256": hashlib.sha256(data).hexdigest(), "key": f"k{i}"} for i in range(20)]
    proc = pool.Processor(len(rows), True, 64)
    sizes = {len(proc.submit(r, data).result().small) for r in rows}
    proc.close()
    print("pool" if proc.pool is not None else "inline", len(sizes))
"""


def test_workers_do_not_re_import_the_main_program(tmp_path: Path) -> None:
    script, log = tmp_path / "program.py", tmp_path / "imports.log"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(IMAGES[0])],
        env={**os.environ, "PROBE_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["pool", "1"]
    assert log.read_text().count("imported") == 1


def _inside_daemon(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from pipeline.convert import pool

    data = Path(path).read_bytes()
    rows = [{"mode": "L", "sha256": hashlib.sha256(data).hexdigest(), "key": f"k{i}"} for i in range(20)]
    proc = pool.Processor(len(rows), True, 64)
    out.put((proc.pool is None, len(proc.run(rows[0], data).small or b"")))


def test_daemonic_processes_decode_in_thread() -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    worker = context.Process(target=_inside_daemon, args=(str(IMAGES[0]), queue), daemon=True)
    worker.start()
    inline, small = queue.get(timeout=60)
    worker.join(timeout=30)
    assert inline is True
    assert small > 0


def test_an_undecodable_image_becomes_its_quarantine_row_in_thread_and_in_the_pool() -> None:
    from pipeline.convert import pool
    from tests.unit.test_png import BROKEN

    bad, _ = BROKEN["IHDR larger than the data"]
    row = {"image_index": "00000005_000.png", "shard": "images_002.zip", "member": "images/00000005_000.png",
           "key": "raw/x/00000005_000.png", "sha256": hashlib.sha256(bad).hexdigest(), "mode": "L"}  # fmt: skip
    inline = pool.Processor(1, True, None)  # gray8 kept as it is: checked in the fetching thread
    pooled = pool.Processor(20, True, 64)  # with a variant: decoded (and checked) in forked workers
    try:
        assert inline.pool is None
        assert pooled.pool is not None
        for future in (pool._settled(inline, row, bad), pooled.submit(row, bad)):
            out = pool._sample(row, bad, future, ())
            assert isinstance(out, pool.Rejected)
            assert out.row["reason_code"] == "undecodable_image"
            named = (out.row["source"], out.row["member"], out.row["image_index"])
            assert named == ("images_002.zip", "images/00000005_000.png", "00000005_000.png")
            assert "IHDR claims a larger image" in out.row["reason"]
    finally:
        pooled.close()


def test_the_units_of_a_process_share_its_workers_and_a_dead_worker_is_replaced() -> None:
    from pipeline.convert import pool

    first = pool.Processor(20, True, 64)
    small = pool.Processor(2, True, 64)  # too small to fork for, but the workers are there already
    assert first.pool is not None
    assert small.pool is first.pool
    with pytest.raises(BrokenProcessPool):
        first.pool.submit(os._exit, 1).result()  # a worker dies (as one killed for its memory would)
    again = pool.Processor(20, True, 64)
    assert again.pool is not None
    assert again.pool is not first.pool
    data = IMAGES[0].read_bytes()
    row = {"sha256": hashlib.sha256(data).hexdigest(), "key": "k"}
    assert again.submit(row, data).result().small


def test_shutting_the_workers_down_ends_their_processes_and_the_next_unit_forks_new_ones() -> None:
    from pipeline.convert import pool

    first = pool.Processor(20, True, 64)
    assert first.pool is not None
    workers = list(first.pool._processes.values())
    assert workers
    assert all(w.is_alive() for w in workers)
    pool.shutdown_workers()
    assert pool._WORKERS == {}
    assert not any(w.is_alive() for w in workers), "every decoding worker ended"
    again = pool.Processor(20, True, 64)
    assert again.pool is not None
    assert again.pool is not first.pool
    data = IMAGES[0].read_bytes()
    assert again.submit({"sha256": hashlib.sha256(data).hexdigest(), "key": "k"}, data).result().small
