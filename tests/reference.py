"""Where the real NIH reference files are: ``../shared/nih-reference`` beside the clone, or $NIH_REFERENCE_DIR.

Tests that use them fail loudly (at import) when they are missing instead of being skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("NIH_REFERENCE_DIR", ROOT.parent / "shared" / "nih-reference"))
if not (REFERENCE / "Data_Entry_2017_v2020_first2000.csv").is_file():
    raise RuntimeError(
        f"NIH reference files not found at {REFERENCE}: clone the repository beside shared/ "
        "or set NIH_REFERENCE_DIR to the folder holding Data_Entry_2017_v2020_first2000.csv"
    )
DATA_ENTRY_FILE = REFERENCE / "Data_Entry_2017_v2020_first2000.csv"
BBOX_FILE = REFERENCE / "BBox_List_2017.csv"
IMAGES = sorted((REFERENCE / "images").glob("*.png"))
