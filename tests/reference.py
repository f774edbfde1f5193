"""The real NIH reference files the tests use, kept in the repository under ``tests/data/nih-reference``.

They are public domain (see that folder's README for where they come from). ``$NIH_REFERENCE_DIR`` points
the tests at another copy with the same file names, for example a fuller excerpt.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("NIH_REFERENCE_DIR") or Path(__file__).resolve().parent / "data" / "nih-reference")
if not (REFERENCE / "Data_Entry_2017_v2020_first2000.csv").is_file():
    raise RuntimeError(
        f"NIH reference files not found at {REFERENCE}: they ship with the repository under "
        "tests/data/nih-reference; restore that folder, or set NIH_REFERENCE_DIR to a folder holding "
        "Data_Entry_2017_v2020_first2000.csv, BBox_List_2017.csv and images/"
    )
DATA_ENTRY_FILE = REFERENCE / "Data_Entry_2017_v2020_first2000.csv"
BBOX_FILE = REFERENCE / "BBox_List_2017.csv"
IMAGES = sorted((REFERENCE / "images").glob("*.png"))
