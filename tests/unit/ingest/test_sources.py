"""Finding the dataset's files in a directory, and reading them as seekable, self-hashing streams."""

from __future__ import annotations

import hashlib
import io
import os
import random
import zipfile
from pathlib import Path

import pytest

from pipeline.errors import BadDataError, SourceNotFoundError
from pipeline.ingest import rangefile, remote, sources

CSV = b"Image Index,Finding Labels\n"


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


def test_a_file_that_does_not_match_its_md5_is_named_with_both_sums(tmp_path: Path) -> None:
    _touch(tmp_path, "images_001.zip", data=b"damaged")
    ref = sources._local_ref(tmp_path / "images_001.zip")
    ref = sources.FileRef(**{**ref.to_dict(), "md5": "0" * 32})
    with pytest.raises(BadDataError, match=r"images_001\.zip .*md5 \w+ does not match 0{32}.*re-download it"):
        sources.hash_file(ref)


def test_changed_file_gets_a_new_fingerprint(tmp_path: Path) -> None:
    _touch(tmp_path, "images_001.zip", "Data_Entry_2017.csv")
    before = sources.discover(str(tmp_path)).shards[0].fingerprint
    assert sources.discover(str(tmp_path)).shards[0].fingerprint == before
    (tmp_path / "images_001.zip").write_bytes(b"yz")
    assert sources.discover(str(tmp_path)).shards[0].fingerprint != before


def test_a_file_replaced_by_one_of_equal_size_and_mtime_gets_a_new_fingerprint(tmp_path: Path) -> None:
    _touch(tmp_path, "images_001.zip", "Data_Entry_2017.csv", data=b"ab")
    path = tmp_path / "images_001.zip"
    before, stat = sources.discover(str(tmp_path)).shards[0], path.stat()
    path.write_bytes(b"zz")  # in place: same inode, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = sources.discover(str(tmp_path)).shards[0]
    assert (after.size, path.stat().st_mtime_ns) == (before.size, stat.st_mtime_ns)
    assert after.fingerprint != before.fingerprint
    assert sources.content_identity(after) != sources.content_identity(before)


def test_the_identity_of_a_file_names_its_location(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _touch(tmp_path / folder, "images_001.zip", "Data_Entry_2017.csv")
    one, two = (sources.discover(str(tmp_path / f)).shards[0] for f in ("a", "b"))
    assert sources.content_identity(one) != sources.content_identity(two)
    assert sources.content_identity(one) == sources.content_identity(sources.discover(str(tmp_path / "a")).shards[0])


@pytest.mark.parametrize(
    ("location", "validator", "kind"),
    [
        ("s3://bucket/nih/images_001.zip", "9b2cf535f27731c974343645a3985328", "s3-etag"),
        ("https://mirror/images_001.zip", '"5e1f-61a2"', "http-etag"),
        ("https://mirror/images_001.zip", 'W/"5e1f-61a2"', "http-weak"),
        ("https://mirror/images_001.zip", "Wed, 21 Oct 2015 07:28:00 GMT", "http-weak"),
        ("https://mirror/images_001.zip", "", "none"),
    ],
)
def test_a_remote_fingerprint_says_what_its_validator_is(location: str, validator: str, kind: str) -> None:
    ref = sources._remote_ref(remote.RemoteInfo("images_001.zip", location, 42, validator))
    assert ref.fingerprint == f"{kind}:{validator}:42"
    assert (sources.content_identity(ref) is None) == (kind == "none")  # no tag: never taken as unchanged


def test_the_identity_of_an_s3_file_names_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = sources._remote_ref(remote.RemoteInfo("images_001.zip", "s3://bucket/images_001.zip", 42, "etag"))
    monkeypatch.setenv("CXR_SOURCE_ENDPOINT_URL", "http://one:8333")
    one = sources.content_identity(ref)
    monkeypatch.setenv("CXR_SOURCE_ENDPOINT_URL", "http://two:8333")
    assert sources.content_identity(ref) != one


def test_a_replaced_file_in_an_unpacked_folder_changes_its_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    png = tmp_path / "images_001" / "images" / "00000001_000.png"
    png.write_bytes(b"png")
    _touch(tmp_path, "Data_Entry_2017.csv")
    before, stat = sources.discover(str(tmp_path)).shards[0].fingerprint, png.stat()
    png.write_bytes(b"PNG")
    os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sources.discover(str(tmp_path)).shards[0].fingerprint != before


# --- RangeFile ---------------------------------------------------------------------------------


class MemoryRanges:
    """An in-memory RangeSource that counts requests."""

    def __init__(self, data: bytes) -> None:
        self.data, self.location, self.size, self.requests = data, "mem://x", len(data), 0

    def read_range(self, start: int, length: int) -> bytes:
        self.requests += 1
        return self.data[start : start + length]

    def close(self) -> None:
        pass


def test_rangefile_reads_and_seeks_like_a_file() -> None:
    data = random.Random(1).randbytes(10_000)
    fh = rangefile.RangeFile(MemoryRanges(data), block_size=1024)
    ref = io.BytesIO(data)
    rng = random.Random(2)
    for _ in range(300):
        where, n = rng.randrange(0, 10_500), rng.randrange(0, 3000)
        fh.seek(where)
        ref.seek(where)
        assert fh.read(n) == ref.read(n)
        assert fh.tell() == ref.tell()
    fh.seek(-10, io.SEEK_END)
    assert fh.read() == data[-10:]
    fh.close()


def test_rangefile_digests_need_no_second_pass_for_a_zip() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(40):
            zf.writestr(f"images/{i:08d}_000.png", random.Random(i).randbytes(5000))
    data = buf.getvalue()
    source = MemoryRanges(data)
    with rangefile.RangeFile(source, block_size=8192, md5=True) as fh:
        with zipfile.ZipFile(fh) as zf:
            for info in zf.infolist():
                zf.read(info)
        digests = fh.digests()
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.md5 == hashlib.md5(data).hexdigest()
    blocks = -(-len(data) // 8192)
    assert source.requests <= blocks + 2  # every block once, the central directory perhaps twice


def test_rangefile_digests_fill_what_was_never_read() -> None:
    data = os.urandom(50_000)
    with rangefile.RangeFile(MemoryRanges(data), block_size=4096) as fh:
        fh.seek(30_000)
        fh.read(100)
        assert fh.digests().sha256 == hashlib.sha256(data).hexdigest()


def test_local_ranges_read_files(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    src = remote.LocalRanges(path)
    assert (src.size, src.read_range(3, 4), src.read_range(8, 10)) == (10, b"3456", b"89")
    src.close()


def test_resume_retries_from_where_a_response_broke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BACKOFF_FIRST_S", 0.0)
    data = bytes(range(256)) * 40
    asked: list[tuple[int, int]] = []

    def flaky(buf: bytearray, offset: int, end: int) -> None:
        asked.append((offset, end))
        buf += data[offset : min(end, offset + 3000)]
        if len(asked) < 4:
            raise ConnectionResetError("connection reset by peer")

    assert remote.fill("test", 0, len(data), flaky) == data
    assert [a[0] for a in asked[:4]] == [0, 3000, 6000, 9000]


def test_resume_gives_up_after_attempts_without_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BACKOFF_FIRST_S", 0.0)

    def dead(buf: bytearray, offset: int, end: int) -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(remote.SourceUnavailableError, match=r"test: 8 attempts in a row failed at byte 0") as info:
        remote.fill("test", 0, 10, dead)
    assert info.value.retryable


def test_unpacked_kaggle_folders_are_shards_and_their_fingerprint_follows_their_content(tmp_path: Path) -> None:
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    (tmp_path / "images_001" / "images" / "00000001_000.png").write_bytes(b"png")
    (tmp_path / "unrelated").mkdir()
    _touch(tmp_path, "images_002.zip", "Data_Entry_2017.csv")
    listing = sources.discover(str(tmp_path))
    assert [ref.name for ref in listing.shards] == ["images_001", "images_002.zip"]
    assert sources.is_folder(listing.shards[0])
    assert not sources.is_folder(listing.shards[1])
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
