"""Finding the dataset's files in a source: archives, metadata, checksum lists, shard selection."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.errors import BadDataError, FileTooLargeError, SourceNotFoundError
from pipeline.ingest import files, sources


def _touch(root: Path, *names: str, data: bytes = b"x") -> None:
    for name in names:
        (root / name).write_bytes(data)


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    _touch(tmp_path, "images_001.zip", "images_002.zip", "images_012.zip", "Data_Entry_2017.csv")
    _touch(tmp_path, "Data_Entry_2017_v2020.csv", "BBox_List_2017.csv", "test_list.txt", "README.md")
    return tmp_path


def test_directory_listing_finds_archives_in_shard_order_and_prefers_v2020(mirror: Path) -> None:
    listing = sources.discover(str(mirror))
    assert [ref.name for ref in listing.shards] == ["images_001.zip", "images_002.zip", "images_012.zip"]
    assert listing.data_entry.name == "Data_Entry_2017_v2020.csv"
    assert listing.bbox is not None
    assert listing.train_val is None
    assert listing.test is not None


@pytest.mark.parametrize("choice", ["2017", "Data_Entry_2017.csv"])
def test_the_user_can_pick_the_2017_labels(mirror: Path, choice: str) -> None:
    assert sources.discover(str(mirror), data_entry=choice).data_entry.name == "Data_Entry_2017.csv"


def test_a_missing_chosen_metadata_file_names_it_and_the_place(tmp_path: Path) -> None:
    _touch(tmp_path, "images_01.tar.gz", "Data_Entry_2017.csv")
    with pytest.raises(SourceNotFoundError, match=rf"Data_Entry_2017_v2020\.csv .* not found in {tmp_path}"):
        sources.discover(str(tmp_path), data_entry="v2020")


def test_missing_metadata_and_missing_archives_are_clear_errors(tmp_path: Path) -> None:
    _touch(tmp_path, "images_01.tar.gz")
    with pytest.raises(SourceNotFoundError, match=r"Data_Entry_2017_v2020\.csv or Data_Entry_2017\.csv not found in"):
        sources.discover(str(tmp_path))
    (tmp_path / "images_01.tar.gz").unlink()
    with pytest.raises(SourceNotFoundError, match=r"no image archives .* found in"):
        sources.discover(str(tmp_path))
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        sources.discover(str(tmp_path / "nowhere"))
    _touch(tmp_path, "Data_Entry_2017.csv")
    with pytest.raises(SourceNotFoundError, match="is a file, not a directory: point --source at the directory"):
        sources.discover(str(tmp_path / "Data_Entry_2017.csv"))


def test_kaggle_sample_is_a_shard_with_its_own_labels(tmp_path: Path) -> None:
    _touch(tmp_path, "sample.zip", "sample_labels.csv")
    listing = sources.discover(str(tmp_path))
    assert [ref.name for ref in listing.shards] == ["sample.zip"]
    assert listing.data_entry.name == "sample_labels.csv"


def test_shards_can_be_picked_by_number_name_or_stem(mirror: Path) -> None:
    picked = sources.discover(str(mirror), shards=("2", "012", "images_001"))
    assert [ref.name for ref in picked.shards] == ["images_001.zip", "images_002.zip", "images_012.zip"]
    with pytest.raises(SourceNotFoundError, match=r"shards \['7'\] asked for but not found"):
        sources.discover(str(mirror), shards=("7",))


def test_both_naming_schemes_for_one_shard_is_refused(mirror: Path) -> None:
    _touch(mirror, "images_02.tar.gz")
    with pytest.raises(BadDataError, match=r"shards \[2\] are present in more than one form"):
        sources.discover(str(mirror))
    assert [r.name for r in sources.discover(str(mirror), shards=("images_02.tar.gz",)).shards] == ["images_02.tar.gz"]


def test_md5_lists_in_both_formats_are_parsed() -> None:
    text = (
        "d41d8cd98f00b204e9800998ecf8427e  images_01.tar.gz\n"
        "0CC175B9C0F1B6A831C399E269772661 *sub/images_02.tar.gz\n"
        "MD5 (Data_Entry_2017.csv) = 900150983cd24fb0d6963f7d28e17f72\n"
        "# a comment\n"
    )
    assert sources.parse_md5_list(text) == {
        "images_01.tar.gz": "d41d8cd98f00b204e9800998ecf8427e",
        "images_02.tar.gz": "0cc175b9c0f1b6a831c399e269772661",
        "Data_Entry_2017.csv": "900150983cd24fb0d6963f7d28e17f72",
    }


def test_a_checksum_list_in_the_source_is_found_and_applied(mirror: Path) -> None:
    md5 = hashlib.md5(b"x").hexdigest()
    (mirror / "MD5_checksums.txt").write_text(f"{md5}  images_001.zip\n{md5}  Data_Entry_2017_v2020.csv\n")
    listing = sources.discover(str(mirror))
    assert listing.checksums is not None
    assert listing.checksums.name == "MD5_checksums.txt"
    assert {ref.name: ref.md5 for ref in listing.shards} == {
        "images_001.zip": md5,
        "images_002.zip": None,
        "images_012.zip": None,
    }
    assert listing.data_entry.md5 == md5


def test_an_explicit_checksum_list_must_hold_md5_lines(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    bad = tmp_path_factory.mktemp("sums") / "sums.txt"
    bad.write_text("not a checksum\n")
    with pytest.raises(BadDataError, match="holds no '<md5>  <file name>' lines"):
        sources.discover(str(mirror), checksums=str(bad))
    with pytest.raises(SourceNotFoundError, match="checksum list /no/such/file not found"):
        sources.discover(str(mirror), checksums="/no/such/file")


def test_changed_file_gets_a_new_fingerprint(tmp_path: Path) -> None:
    _touch(tmp_path, "images_001.zip", "Data_Entry_2017.csv")
    before = sources.discover(str(tmp_path)).shards[0].fingerprint
    assert sources.discover(str(tmp_path)).shards[0].fingerprint == before
    (tmp_path / "images_001.zip").write_bytes(b"yz")
    assert sources.discover(str(tmp_path)).shards[0].fingerprint != before


def test_a_replaced_file_in_an_unpacked_folder_changes_its_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    png = tmp_path / "images_001" / "images" / "00000001_000.png"
    png.write_bytes(b"png")
    _touch(tmp_path, "Data_Entry_2017.csv")
    before, stat = sources.discover(str(tmp_path)).shards[0].fingerprint, png.stat()
    png.write_bytes(b"PNG")
    os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sources.discover(str(tmp_path)).shards[0].fingerprint != before


def test_unpacked_kaggle_folders_are_shards_and_their_fingerprint_follows_their_content(tmp_path: Path) -> None:
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    (tmp_path / "images_001" / "images" / "00000001_000.png").write_bytes(b"png")
    (tmp_path / "unrelated").mkdir()
    _touch(tmp_path, "images_002.zip", "Data_Entry_2017.csv")
    listing = sources.discover(str(tmp_path))
    assert [ref.name for ref in listing.shards] == ["images_001", "images_002.zip"]
    assert files.is_folder(listing.shards[0])
    assert not files.is_folder(listing.shards[1])
    before = listing.shards[0].fingerprint
    (tmp_path / "images_001" / "images" / "00000001_001.png").write_bytes(b"png")
    assert sources.discover(str(tmp_path)).shards[0].fingerprint != before
    _touch(tmp_path, "images_001.zip")
    with pytest.raises(BadDataError, match="more than one form"):
        sources.discover(str(tmp_path))


def test_run_options_reach_discovery(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.run import tasks

    monkeypatch.setenv("CXR_STORE", "s3://bucket/prefix")
    md5 = hashlib.md5(b"x").hexdigest()
    (mirror / "sums.txt").write_text(f"{md5}  images_002.zip\n")
    params = {"source": str(mirror), "data_entry": "2017", "checksums": "sums.txt", "shards": ["2"]}
    listing = tasks._listing(tasks.config_from_params(params, "run-1"))
    assert listing.data_entry.name == "Data_Entry_2017.csv"
    assert [(ref.name, ref.md5) for ref in listing.shards] == [("images_002.zip", md5)]


def test_a_metadata_file_over_its_size_limit_fails_discovery_before_it_is_read(mirror: Path) -> None:
    with (mirror / "BBox_List_2017.csv").open("r+b") as fh:
        fh.truncate(17 << 20)  # sparse: over the 16 MiB limit of a box list without taking the disk
    with pytest.raises(FileTooLargeError, match=r"BBox_List_2017\.csv: 17,825,792 bytes, over the 16 MiB limit"):
        sources.discover(str(mirror))


def test_archive_names_give_their_kind_and_stem() -> None:
    assert [sources.archive_kind(n) for n in ("images_001.zip", "images_01.tar.gz", "x.tgz", "x.tar", "md5.txt")] == [
        "zip",
        "tar",
        "tar",
        "tar",
        None,
    ]
    assert [sources.shard_stem(n) for n in ("images_001.zip", "images_01.tar.gz", "images_001")] == [
        "images_001",
        "images_01",
        "images_001",
    ]


def test_annotation_layers_are_found_by_name_path_or_with_their_spec(
    mirror: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("layers")
    _touch(mirror, "relabels.csv", "relabels.layer.json", "test_labels.csv")
    _touch(elsewhere, "validation_labels.csv", "boxes.csv", "boxes.csv.layer.json")
    given = {
        "team": ("relabels.csv",),
        "google": ("test_labels.csv", str(elsewhere / "validation_labels.csv")),
        "boxes": (str(elsewhere / "boxes.csv"),),
    }
    listing = sources.discover(str(mirror), annotations=given)
    found = {a.id: ([f.name for f in a.files], a.spec.name if a.spec else None) for a in listing.annotations}
    assert found == {
        "team": (["relabels.csv"], "relabels.layer.json"),
        "google": (["test_labels.csv", "validation_labels.csv"], None),
        "boxes": (["boxes.csv"], "boxes.csv.layer.json"),
    }
    assert {f.name for f in listing.annotation_files()} >= {"relabels.layer.json", "boxes.csv.layer.json"}


def test_a_missing_layer_file_or_two_specs_for_one_layer_are_named(mirror: Path) -> None:
    with pytest.raises(SourceNotFoundError, match=r"annotation layer 'gone': nowhere\.csv is neither a file in"):
        sources.discover(str(mirror), annotations={"gone": ("nowhere.csv",)})
    _touch(mirror, "a.csv", "a.layer.json", "b.csv", "b.layer.json")
    with pytest.raises(BadDataError, match="its files have different specs beside them"):
        sources.discover(str(mirror), annotations={"two": ("a.csv", "b.csv")})


def test_a_layer_file_over_its_size_limit_is_refused_at_discovery(mirror: Path) -> None:
    with (mirror / "huge.csv").open("wb") as fh:
        fh.truncate(129 << 20)  # sparse: over the 128 MiB limit of a layer file
    with pytest.raises(FileTooLargeError, match=r"huge\.csv: .* over the 128 MiB limit"):
        sources.discover(str(mirror), annotations={"huge": ("huge.csv",)})


def test_layer_options_are_checked_before_anything_runs(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import UsageError
    from pipeline.run import tasks

    monkeypatch.setenv("CXR_STORE", "s3://bucket/prefix")
    _touch(mirror, "relabels.csv")
    cfg = tasks.config_from_params({"source": str(mirror), "annotations": ["team=relabels.csv"]}, "run-1")
    assert [a.id for a in tasks._listing(cfg).annotations] == ["team"]
    for bad, message in (("Team=relabels.csv", "annotation layer id 'Team'"), ("split=relabels.csv", "already name")):
        with pytest.raises(UsageError, match=message):
            tasks.config_from_params({"source": str(mirror), "annotations": [bad]}, "run-1")
