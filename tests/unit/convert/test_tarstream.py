"""WebDataset shards are written by our own USTAR writer: it must give exactly tarfile's bytes."""

from __future__ import annotations

import io
import tarfile

import pytest

from pipeline.convert.tarstream import TAR_MTIME, TarStream


def _tarfile_bytes(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                len(data),
                TAR_MTIME,
                0o444,
                0,
                0,
                "",
                "",
            )
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    "sizes",
    [[], [0], [1, 511, 512, 513], [10_240, 10_239], [300_001, 7, 20_000]],
    ids=["empty", "zero-byte", "block-edges", "record-edges", "image-like"],
)
def test_the_stream_equals_tarfile_byte_for_byte(sizes: list[int]) -> None:
    members = [(f"0000{i:04d}_000.{'png' if i % 2 else 'json'}", bytes([i % 251]) * n) for i, n in enumerate(sizes)]
    out = io.BytesIO()
    stream = TarStream(out)  # type: ignore[arg-type]
    for name, data in members:
        stream.add(name, data)
    stream.close()
    assert out.getvalue() == _tarfile_bytes(members)
    assert stream.offset == len(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()] == members  # type: ignore[union-attr]


def test_a_name_too_long_for_ustar_is_refused_not_truncated() -> None:
    with pytest.raises(ValueError, match="name"):
        TarStream(io.BytesIO()).add("x" * 300, b"")  # type: ignore[arg-type]
