"""Look-alike image names a mirror may hand us, through validation and curation, and paths in a manifest.

The names' own rules have direct tests: image ids and archive names in tests/unit/test_nih.py, release versions
and store locations in tests/unit/test_config.py, the form's version pattern in tests/unit/test_options.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.curate import normalise
from pipeline.errors import PipelineError
from pipeline.read.client import ReleaseClient

ROOT = Path(__file__).resolve().parents[2]
ARABIC_INDIC = "٠٠٠٠٠٠٠١_٠٠٠.png"  # U+0660.. : \d and int() take these
FULLWIDTH = "０００００００１_０００.png"  # U+FF10..


# --- image ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["data_entry", "bbox", "split_lists"])
def test_validation_suites_refuse_look_alike_image_names(suite: str) -> None:
    payload = json.loads((ROOT / "expectations" / f"{suite}.json").read_text())
    regexes = [spec["kwargs"]["regex"] for spec in payload["expectations"] if "regex" in spec["kwargs"]]
    assert regexes, f"{suite} has no image-name expectation"
    for regex in regexes:
        names = pd.Series(["00000001_000.png", ARABIC_INDIC, FULLWIDTH])
        assert names.str.match(regex).tolist() == [True, False, False]  # GX matches with pandas, as here


def test_metadata_ids_in_unicode_digits_are_counted_unparsable_not_silently_null() -> None:
    notes: dict[str, int] = {}
    parsed = normalise.to_int(pd.Series(["12", "٠٠١٢", "１２"]), notes, "patient_id")
    assert parsed.tolist()[0] == 12
    assert parsed.isna().tolist() == [False, True, True]
    assert notes["unparsable_patient_id"] == 2


def test_no_path_outside_the_release_folder_on_download(tmp_path: Path) -> None:
    client = ReleaseClient("s3://bkt/p")
    release = publish_release_stub(client, [{"path": "parquet/../../../escape.parquet", "kind": "parquet"}])
    with pytest.raises(PipelineError, match="not a plain relative path"):
        release.download(tmp_path)
    assert list(tmp_path.iterdir()) == []


def publish_release_stub(client: ReleaseClient, files: list[dict[str, Any]]) -> Any:
    from pipeline.read.client import Release

    return Release(client, "v1", {"files": [{"size": 1, "sha256": "0" * 64, **f} for f in files]})


def test_cxr_validate_blocks_a_data_entry_row_with_a_look_alike_image_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.curate.validate import validate_main
    from tests.reference import DATA_ENTRY_FILE

    lines = DATA_ENTRY_FILE.read_text().splitlines(keepends=True)
    lines[1] = ARABIC_INDIC + lines[1][lines[1].index(",") :]
    path = tmp_path / DATA_ENTRY_FILE.name
    path.write_text("".join(lines))
    assert validate_main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "[blocking] data_entry.image_index_pattern" in out
    assert f"line=2, image_index='{ARABIC_INDIC}'" in out
