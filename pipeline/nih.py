"""Facts about the NIH ChestX-ray14 dataset that every stage shares.

Figures come from the dataset's own documentation (see the project's reference notes):
112,120 images of 30,805 patients in 12 archive shards.
"""

from __future__ import annotations

import re

TOTAL_IMAGES = 112_120
TOTAL_PATIENTS = 30_805

#: Images per archive shard in the real dataset, shard 1 .. 12.
SHARD_SIZES: tuple[int, ...] = (4_999,) + (10_000,) * 10 + (7_121,)

#: Kaggle's naming (``images_001.zip``) and NIH Box's (``images_01.tar.gz``).
ZIP_SHARD_NAMES: tuple[str, ...] = tuple(f"images_{i:03d}.zip" for i in range(1, 13))
TAR_SHARD_NAMES: tuple[str, ...] = tuple(f"images_{i:02d}.tar.gz" for i in range(1, 13))
SHARD_NAME_RE = re.compile(r"^images_(?P<num>[0-9]{2,3})\.(?P<ext>zip|tar\.gz)\Z", re.ASCII)

#: ``<8-digit patient id>_<3-digit follow-up>.png``, ASCII digits only: ``\d`` and ``int()`` also take Arabic-Indic,
#: fullwidth and other Unicode digits, which would turn a look-alike name into a real patient's id. The pattern
#: spells ``[0-9]`` (not ``\d`` with ``re.ASCII``) because pandas' ``str.extract`` takes it as text, without flags,
#: and ends in ``\Z``: ``$`` would also match before a trailing newline (a tar member may be named so).
IMAGE_NAME_RE = re.compile(r"^(?P<patient>[0-9]{8})_(?P<follow_up>[0-9]{3})\.png\Z", re.ASCII)

DATA_ENTRY_2017 = "Data_Entry_2017.csv"
DATA_ENTRY_V2020 = "Data_Entry_2017_v2020.csv"
BBOX_LIST = "BBox_List_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"

NO_FINDING = "No Finding"

#: The 14 findings, spelled as Data_Entry spells them.
FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
LABELS: tuple[str, ...] = (*FINDINGS, NO_FINDING)

#: The 8 findings that have bounding boxes, spelled as Data_Entry spells them.
BBOX_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
)

#: Share of images carrying each label in the real dataset (No Finding and findings).
LABEL_PREVALENCE: dict[str, float] = {
    "No Finding": 0.538,
    "Infiltration": 0.177,
    "Effusion": 0.119,
    "Atelectasis": 0.103,
    "Nodule": 0.056,
    "Mass": 0.052,
    "Pneumothorax": 0.047,
    "Consolidation": 0.042,
    "Pleural_Thickening": 0.030,
    "Cardiomegaly": 0.025,
    "Emphysema": 0.022,
    "Edema": 0.021,
    "Fibrosis": 0.015,
    "Pneumonia": 0.013,
    "Hernia": 0.002,
}

IMAGE_SIDE = 1024


def image_ids(name: str) -> tuple[int, int] | None:
    """(patient id, follow-up) of an image name (``00000001_000.png`` -> (1, 0)), or None if it is not one."""
    match = IMAGE_NAME_RE.fullmatch(name)
    return (int(match["patient"]), int(match["follow_up"])) if match else None


def shard_number(name: str) -> int | None:
    """Return the shard number (1-12) of an archive name, or None if it is not a shard name."""
    match = SHARD_NAME_RE.match(name)
    return int(match["num"]) if match else None


def finding_column(label: str) -> str:
    """Return the snake_case column name of a label (``Pleural_Thickening`` -> ``pleural_thickening``)."""
    return label.lower().replace(" ", "_")
