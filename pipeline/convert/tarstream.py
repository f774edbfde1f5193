"""A USTAR tar writer for WebDataset shards: byte-reproducible, and without tarfile's 16 KiB copy loop.

Each member is written as its header, its bytes and padding (three writes into the stream, which the
multipart uploader turns into parts). Fixed mtime, mode 0444 and an anonymous root owner make two runs
over the same samples give the same bytes; they are exactly what :mod:`tarfile` writes for those members.
"""

from __future__ import annotations

import io
import tarfile

TAR_MTIME = 1_500_000_000  # fixed (2017-07-14) so shards are byte-reproducible


class TarStream:
    """Writes a USTAR tar into a binary stream, each member as a header, its bytes and padding.

    The bytes are those of :mod:`tarfile` with a fixed mtime, mode 0444 and root owner (a test holds it to
    that), without tarfile's copy through a 16 KiB buffer.
    """

    def __init__(self, out: io.RawIOBase) -> None:
        self.out, self.offset = out, 0

    def add(self, name: str, data: bytes) -> None:
        """Append one regular-file member."""
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        pad = -len(data) % tarfile.BLOCKSIZE
        for chunk in (info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"), data, tarfile.NUL * pad):
            if chunk:
                self.out.write(chunk)
                self.offset += len(chunk)

    def close(self) -> None:
        """Write the end-of-archive blocks and pad to a whole record, as tarfile does."""
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
        end += tarfile.NUL * (-(self.offset + len(end)) % tarfile.RECORDSIZE)
        self.out.write(end)
        self.offset += len(end)
