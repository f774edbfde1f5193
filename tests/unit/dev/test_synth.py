"""Tests of the synthetic ChestX-ray14 mirror (pipeline.dev.synth)."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import nih
from pipeline.dev.synth import SynthConfig, SynthSummary, make_plan, synthesize
from pipeline.dev.synth.archives import shard_counts
from pipeline.dev.synth.metadata import BBOX_HEADER, HEADER_2017, HEADER_NO_TRAILING_COMMA

MEMBER_RE = re.compile(r"^images/\d{8}_\d{3}\.png$")
SMALL = 64


def _synth(dest: Path, **kwargs: object) -> SynthSummary:
    options: dict[str, object] = {"images": 240, "image_size": SMALL, "workers": 1, **kwargs}
    return synthesize(SynthConfig(dest=dest, **options))  # type: ignore[arg-type]


def _members(dest: Path, summary: SynthSummary) -> dict[str, bytes]:
    """Every image member of every shard: member name -> bytes."""
    members: dict[str, bytes] = {}
    for name, _ in summary.shards:
        if name.endswith(".zip"):
            with zipfile.ZipFile(dest / name) as archive:
                members.update((m, archive.read(m)) for m in archive.namelist())
        else:
            with tarfile.open(dest / name, "r:gz") as archive:
                for info in archive.getmembers():
                    extracted = archive.extractfile(info)
                    assert extracted is not None
                    members[info.name] = extracted.read()
    return members


def _tree(dest: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(dest.iterdir())}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    dest = tmp_path_factory.mktemp("synth") / "mirror"
    return dest, _synth(dest)


@pytest.fixture(scope="module")
def entries(dataset: tuple[Path, SynthSummary]) -> pd.DataFrame:
    return pd.read_csv(dataset[0] / nih.DATA_ENTRY_2017, index_col=False)


@pytest.fixture(scope="module")
def quirky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    dest = tmp_path_factory.mktemp("synth") / "quirky"
    return dest, _synth(dest, quirks=True, images=400, seed=3)


# ---- determinism ------------------------------------------------------------------------------


def test_same_config_gives_byte_identical_files_whatever_the_worker_count(
    dataset: tuple[Path, SynthSummary], tmp_path: Path
) -> None:
    dest, summary = dataset
    again = _synth(tmp_path / "again", workers=2)
    assert again.files == summary.files
    assert _tree(tmp_path / "again") == _tree(dest)


def test_a_different_seed_gives_different_files(dataset: tuple[Path, SynthSummary], tmp_path: Path) -> None:
    _synth(tmp_path / "other", seed=1)
    ours, theirs = _tree(dataset[0]), _tree(tmp_path / "other")
    assert ours[nih.DATA_ENTRY_2017] != theirs[nih.DATA_ENTRY_2017]
    assert ours["images_002.zip"] != theirs["images_002.zip"]


def test_tar_gz_shards_are_reproducible_and_named_like_nih_box(tmp_path: Path) -> None:
    first = _synth(tmp_path / "a", images=30, archive="tar.gz")
    _synth(tmp_path / "b", images=30, archive="tar.gz")
    assert [name for name, _ in first.shards] == list(nih.TAR_SHARD_NAMES)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    members = _members(tmp_path / "a", first)
    assert len(members) == 30
    assert all(MEMBER_RE.match(m) for m in members)


# ---- layout -----------------------------------------------------------------------------------


def test_layout_has_12_zip_shards_the_metadata_and_the_lists(dataset: tuple[Path, SynthSummary]) -> None:
    dest, summary = dataset
    expected = {*nih.ZIP_SHARD_NAMES, nih.DATA_ENTRY_2017, nih.BBOX_LIST, nih.TRAIN_VAL_LIST, nih.TEST_LIST}
    assert set(summary.files) == expected
    assert sorted(p.name for p in dest.iterdir()) == summary.files
    assert [name for name, _ in summary.shards] == list(nih.ZIP_SHARD_NAMES)
    assert summary.images == 240
    assert summary.quirks == {}


def test_members_are_named_like_the_real_ones_and_sorted_across_shards(
    dataset: tuple[Path, SynthSummary],
) -> None:
    dest, summary = dataset
    names: list[str] = []
    for shard, count in summary.shards:
        with zipfile.ZipFile(dest / shard) as archive:
            infos = archive.infolist()
        assert len(infos) == count
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        names.extend(i.filename for i in infos)
    assert all(MEMBER_RE.match(n) for n in names)
    assert names == sorted(names)
    assert len(set(names)) == 240


@pytest.mark.parametrize("n", [1, 5, 11, 12, 13, 24, 240, 1000, nih.TOTAL_IMAGES])
def test_shard_counts_follow_the_real_proportions(n: int) -> None:
    counts = shard_counts(n)
    assert sum(counts) == n
    quotas = [n * size / nih.TOTAL_IMAGES for size in nih.SHARD_SIZES]
    assert all(abs(c - q) <= 1 for c, q in zip(counts, quotas, strict=True))
    if n >= 12:
        assert all(counts)
    if n == nih.TOTAL_IMAGES:
        assert tuple(counts) == nih.SHARD_SIZES


def test_only_non_empty_shards_are_written_for_tiny_datasets(tmp_path: Path) -> None:
    summary = _synth(tmp_path / "tiny", images=5)
    assert 0 < len(summary.shards) < 12
    assert sum(count for _, count in summary.shards) == 5
    assert all(count > 0 for _, count in summary.shards)


def test_progress_is_reported_per_image_and_nothing_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[int] = []
    synthesize(SynthConfig(tmp_path / "p", images=20, image_size=32, workers=1), progress=calls.append)
    assert sum(calls) == 20
    assert capsys.readouterr() == ("", "")


# ---- metadata ---------------------------------------------------------------------------------


def test_data_entry_has_the_real_2017_header_and_one_row_per_image(
    dataset: tuple[Path, SynthSummary], entries: pd.DataFrame
) -> None:
    dest, summary = dataset
    lines = (dest / nih.DATA_ENTRY_2017).read_text().splitlines()
    assert lines[0] == HEADER_2017
    assert all(len(line.split(",")) == 11 for line in lines[1:])
    assert len(entries) == 240
    assert entries["Image Index"].is_unique
    members = {m.removeprefix("images/") for m in _members(dest, summary)}
    assert set(entries["Image Index"]) == members
    assert summary.patients == entries["Patient ID"].nunique()


def test_rows_are_consistent_patients_and_follow_ups(entries: pd.DataFrame) -> None:
    assert list(entries["Image Index"]) == sorted(entries["Image Index"])
    for patient, group in entries.groupby("Patient ID"):
        assert list(group["Follow-up #"]) == list(range(len(group)))
        assert all(name.startswith(f"{patient:08d}_") for name in group["Image Index"])
    ids = entries["Patient ID"].drop_duplicates().tolist()
    assert ids[0] >= 1
    assert ids == sorted(ids)
    assert set(entries["View Position"]) <= {"PA", "AP"}
    assert set(entries["Patient Gender"]) <= {"M", "F"}
    assert entries["Patient Age"].between(1, 95).all()
    assert entries["OriginalImage[Width"].between(2000, 3100).all()
    assert entries["OriginalImagePixelSpacing[x"].between(0.139, 0.171).all()


def test_labels_follow_the_real_rules(entries: pd.DataFrame) -> None:
    for cell in entries["Finding Labels"]:
        labels = cell.split("|")
        assert set(labels) <= set(nih.LABELS)
        assert labels == sorted(labels)
        assert len(set(labels)) == len(labels)
        assert nih.NO_FINDING not in labels or labels == [nih.NO_FINDING]


def test_distributions_look_like_the_real_dataset() -> None:
    records = make_plan(seed=5, n=20_000, with_quirks=False).records
    frame = pd.DataFrame(
        {"age": [r.age for r in records], "sex": [r.sex for r in records], "view": [r.view for r in records]}
    )
    assert 44 <= frame["age"].mean() <= 50
    assert 0.52 <= (frame["sex"] == "M").mean() <= 0.60
    assert 0.56 <= (frame["view"] == "PA").mean() <= 0.64
    labels = Counter(label for r in records for label in (r.findings or (nih.NO_FINDING,)))
    for label in (nih.NO_FINDING, "Infiltration", "Effusion", "Atelectasis"):
        assert labels[label] / len(records) == pytest.approx(nih.LABEL_PREVALENCE[label], rel=0.25)
    per_patient = Counter(r.patient for r in records)
    assert 3.0 <= len(records) / len(per_patient) <= 4.3
    assert max(per_patient.values()) >= 20
    assert sum(1 for c in per_patient.values() if c <= 3) / len(per_patient) >= 0.6


def test_split_lists_are_patient_disjoint_sorted_and_cover_every_image(
    dataset: tuple[Path, SynthSummary], entries: pd.DataFrame
) -> None:
    dest, _ = dataset
    train = (dest / nih.TRAIN_VAL_LIST).read_text().splitlines()
    test = (dest / nih.TEST_LIST).read_text().splitlines()
    assert train == sorted(train)
    assert test == sorted(test)
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(entries["Image Index"])
    assert 0.18 <= len(test) / 240 <= 0.28
    patient = {name: name[:8] for name in entries["Image Index"]}
    assert not {patient[n] for n in train} & {patient[n] for n in test}


def test_bounding_boxes_are_on_test_images_inside_the_image_and_match_findings(
    dataset: tuple[Path, SynthSummary], entries: pd.DataFrame
) -> None:
    dest, _ = dataset
    text = (dest / nih.BBOX_LIST).read_text()
    assert text.startswith(BBOX_HEADER + "\n")
    assert text.endswith("\n\n")
    assert len(pd.read_csv(dest / nih.BBOX_LIST).columns) == 9  # 6 named columns (brackets split) + 3 empty
    rows = [line.split(",") for line in text.splitlines()[1:] if line]
    assert 1 <= len(rows) <= 6
    test = set((dest / nih.TEST_LIST).read_text().split())
    findings = dict(zip(entries["Image Index"], entries["Finding Labels"], strict=True))
    for name, label, *numbers in rows:
        x, y, w, h = (float(v) for v in numbers)
        assert name in test
        assert label != "Infiltration"
        data_entry_label = "Infiltration" if label == "Infiltrate" else label
        assert data_entry_label in nih.BBOX_LABELS
        assert data_entry_label in findings[name].split("|")
        assert min(x, y) >= 0
        assert min(w, h) > 0
        assert x + w <= nih.IMAGE_SIDE
        assert y + h <= nih.IMAGE_SIDE


# ---- images -----------------------------------------------------------------------------------


def test_full_size_pngs_look_and_weigh_like_the_real_ones(tmp_path: Path) -> None:
    summary = _synth(tmp_path / "full", images=10, image_size=1024)
    for name, data in _members(tmp_path / "full", summary).items():
        assert 300_000 <= len(data) <= 450_000, name
        image = Image.open(io.BytesIO(data))
        assert (image.mode, image.size) == ("L", (1024, 1024))
        pixels = np.asarray(image, dtype=np.float64)
        assert 90 <= pixels.mean() <= 200  # real films: 125-180
        assert pixels.std() >= 40  # dark lungs and air against bright bone and abdomen
        assert np.percentile(pixels, 1) <= 30
        assert np.percentile(pixels, 99) >= 200


def test_small_images_have_the_requested_size(dataset: tuple[Path, SynthSummary]) -> None:
    dest, summary = dataset
    data = next(iter(_members(dest, summary).values()))
    image = Image.open(io.BytesIO(data))
    assert (image.mode, image.size) == ("L", (SMALL, SMALL))


# ---- quirks -----------------------------------------------------------------------------------


def test_quirks_produce_rgba_and_two_channel_images_with_the_same_grey(
    quirky: tuple[Path, SynthSummary],
) -> None:
    dest, summary = quirky
    modes: Counter[str] = Counter()
    for data in _members(dest, summary).values():
        image = Image.open(io.BytesIO(data))
        modes[image.mode] += 1
        pixels = np.asarray(image)
        if image.mode == "RGBA":
            assert (pixels[..., 0] == pixels[..., 1]).all()
            assert (pixels[..., 0] == pixels[..., 2]).all()
            assert (pixels[..., 3] == 255).all()
        elif image.mode == "LA":
            assert (pixels[..., 1] == 255).all()
    assert modes["RGBA"] == summary.quirks["rgba_image"] >= 2
    assert modes["LA"] == summary.quirks["la_image"] >= 1
    assert modes["L"] == 400 - modes["RGBA"] - modes["LA"]


def test_quirks_in_the_metadata(quirky: tuple[Path, SynthSummary]) -> None:
    dest, summary = quirky
    lines = (dest / nih.DATA_ENTRY_2017).read_text().splitlines()
    assert lines[0] == HEADER_NO_TRAILING_COMMA
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 400
    ages = [row[4] for row in rows]
    impossible = [a for a in ages if a.isdigit() and (148 <= int(a) <= 155 or 411 <= int(a) <= 414)]
    assert len(impossible) == summary.quirks["impossible_age"] >= 2
    assert sum(bool(re.fullmatch(r"\d{3}Y", a)) for a in ages) == summary.quirks["age_years_string"]
    assert sum(bool(re.fullmatch(r"\d{3}M", a)) for a in ages) == 1
    assert sum(bool(re.fullmatch(r"\d{3}D", a)) for a in ages) == 1
    assert sum(row[1] == "No_Finding" for row in rows) == summary.quirks["no_finding_underscore"] >= 2
    noisy = [row[9] for row in rows if len(row[9]) > 8]
    assert len(noisy) == summary.quirks["pixel_spacing_float_noise"] >= 2
    assert all(abs(float(s) - round(float(s), 3)) < 1e-12 for s in noisy)
    padded = [row[2] for row in rows if len(row[2]) == 3 and row[2].startswith("0")]
    assert len(padded) == summary.quirks["zero_padded_follow_up"] >= 2
    assert summary.quirks["header_without_trailing_comma"] == 1


# ---- errors -----------------------------------------------------------------------------------


def test_a_non_empty_destination_is_refused_unless_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="empty or new directory"):
        _synth(dest, images=12)
    summary = _synth(dest, images=12, overwrite=True)
    assert (dest / "keep.txt").read_text() == "mine"
    assert set(summary.files) < {p.name for p in dest.iterdir()}


def test_overwrite_replaces_an_earlier_mirror(tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    _synth(dest, images=24, archive="tar.gz")
    summary = _synth(dest, images=24, overwrite=True)
    assert sorted(p.name for p in dest.iterdir()) == summary.files


@pytest.mark.parametrize(
    "bad",
    [{"images": 0}, {"image_size": 8}, {"archive": "rar"}, {"seed": -1}, {"workers": -1}],
)
def test_invalid_configs_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        _synth(tmp_path / "x", **bad)
    assert not (tmp_path / "x").exists()
