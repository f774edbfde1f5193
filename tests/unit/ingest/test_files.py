"""One source file: its fingerprint and identity, reading it whole under its size limit, hashing it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.errors import BadDataError, FileTooLargeError, SourceNotFoundError, UnreadableFileError
from pipeline.ingest import files, remote, sources


def _touch(root: Path, *names: str, data: bytes = b"x") -> None:
    for name in names:
        (root / name).write_bytes(data)


def test_a_file_that_does_not_match_its_md5_is_named_with_both_sums(tmp_path: Path) -> None:
    _touch(tmp_path, "images_001.zip", data=b"damaged")
    ref = files.local_ref(tmp_path / "images_001.zip")
    ref = files.FileRef(**{**ref.to_dict(), "md5": "0" * 32})
    with pytest.raises(BadDataError, match=r"images_001\.zip .*md5 \w+ does not match 0{32}.*re-download it"):
        files.hash_file(ref)


def test_a_file_replaced_by_one_of_equal_size_and_mtime_gets_a_new_fingerprint(tmp_path: Path) -> None:
    _touch(tmp_path, "images_001.zip", "Data_Entry_2017.csv", data=b"ab")
    path = tmp_path / "images_001.zip"
    before, stat = sources.discover(str(tmp_path)).shards[0], path.stat()
    path.write_bytes(b"zz")  # in place: same inode, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = sources.discover(str(tmp_path)).shards[0]
    assert (after.size, path.stat().st_mtime_ns) == (before.size, stat.st_mtime_ns)
    assert after.fingerprint != before.fingerprint
    assert files.content_identity(after) != files.content_identity(before)


def test_the_identity_of_a_file_names_its_location(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _touch(tmp_path / folder, "images_001.zip", "Data_Entry_2017.csv")
    one, two = (sources.discover(str(tmp_path / f)).shards[0] for f in ("a", "b"))
    assert files.content_identity(one) != files.content_identity(two)
    assert files.content_identity(one) == files.content_identity(sources.discover(str(tmp_path / "a")).shards[0])


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
    ref = files.remote_ref(remote.RemoteInfo("images_001.zip", location, 42, validator))
    assert ref.fingerprint == f"{kind}:{validator}:42"
    assert (files.content_identity(ref) is None) == (kind == "none")  # no tag: never taken as unchanged


def test_the_identity_of_an_s3_file_names_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = files.remote_ref(remote.RemoteInfo("images_001.zip", "s3://bucket/images_001.zip", 42, "etag"))
    monkeypatch.setenv("CXR_SOURCE_ENDPOINT_URL", "http://one:8333")
    one = files.content_identity(ref)
    monkeypatch.setenv("CXR_SOURCE_ENDPOINT_URL", "http://two:8333")
    assert files.content_identity(ref) != one


def test_size_limits_are_per_kind_and_far_above_the_real_files() -> None:
    assert files.MAX_FILE_BYTES["data_entry"] >= 10 * 8_500_000
    assert files.MAX_FILE_BYTES["bbox"] >= 100 * 90_000
    assert files.MAX_FILE_BYTES["split_list"] >= 10 * 1_600_000
    files.check_size("BBox_List_2017.csv", files.MAX_FILE_BYTES["bbox"], "bbox")
    with pytest.raises(FileTooLargeError, match=r"Data_Entry_2017\.csv: 1,073,741,824 bytes, over the 128 MiB limit"):
        files.check_size("Data_Entry_2017.csv", 1 << 30, "data_entry")
    assert issubclass(FileTooLargeError, UnreadableFileError)
    assert not FileTooLargeError.retryable


def test_reading_a_file_whole_refuses_one_over_its_limit_or_grown_since_it_was_listed(tmp_path: Path) -> None:
    sums = tmp_path / "MD5_checksums.txt"
    sums.write_bytes(b"")
    with sums.open("r+b") as fh:
        fh.truncate(17 << 20)  # sparse: over the md5 list's 16 MiB limit
    with pytest.raises(FileTooLargeError, match=r"MD5_checksums\.txt: 17,825,792 bytes, over the 16 MiB limit"):
        files.read_file(files.local_ref(sums), "checksums")
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_bytes(b"Image Index\n")
    ref = files.local_ref(csv)
    assert files.read_file(ref, "data_entry") == b"Image Index\n"
    csv.write_bytes(b"Image Index\n00000001_000.png\n")
    with pytest.raises(BadDataError, match=r"Data_Entry_2017\.csv: read 13 bytes, expected 12; it changed\? rerun"):
        files.read_file(ref)


def test_a_local_file_that_disappears_is_named(tmp_path: Path) -> None:
    path = tmp_path / "images_001.zip"
    path.write_bytes(b"zip")
    ref = files.local_ref(path)
    assert files.refreshed(ref) == ref
    path.unlink()
    with pytest.raises(SourceNotFoundError, match=rf"{path} disappeared from the source while this run used it"):
        files.refreshed(ref)


def test_hashing_a_file_gives_its_sha256_and_md5(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "images_001.zip"
    path.write_bytes(data)
    ref = files.FileRef(**{**files.local_ref(path).to_dict(), "md5": hashlib.md5(data).hexdigest()})
    digests = files.hash_file(ref)
    assert (digests.size, digests.sha256, digests.md5) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
    )
    with files.open_file(ref) as fh:
        fh.seek(1 << 20)
        assert fh.read(10) == data[1 << 20 : (1 << 20) + 10]
