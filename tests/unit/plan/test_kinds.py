"""pipeline.plan.kinds: what was lost and what is absent, said by kind, without pandas."""

from __future__ import annotations

import subprocess
import sys

from pipeline.plan.kinds import accounting_lines, accounting_text, kinds_text


def test_kinds_are_named_in_a_fixed_order_with_singular_and_plural_and_zeros_left_out() -> None:
    counts = {"boxes": 1, "images": 2, "split_list_names": 94_143, "box_rows": 0}
    assert kinds_text(counts) == "2 images, 94,143 split-list names, 1 box"
    assert kinds_text({}) == "none"


def test_lost_and_absent_are_two_lines_or_one_sentence() -> None:
    summary = {"quarantined_by_kind": {"images": 1}, "not_in_source": {"data_entry_rows": 3}}
    assert accounting_lines(summary) == ["quarantined: 1 image", "not in this source (subset): 3 Data_Entry rows"]
    assert accounting_text(summary) == "quarantined: 1 image; not in this source (subset): 3 Data_Entry rows"


def test_importing_it_pulls_in_no_pandas() -> None:
    code = "import sys, pipeline.plan.kinds; print('pandas' in sys.modules, 'pipeline.plan.crosscheck' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["False", "False"]
