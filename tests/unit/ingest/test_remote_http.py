"""HTTP(S) sources against a loopback server: probes, index pages, ranged reads that resume, spooling without Range."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import BadDataError, SourceUnavailableError
from pipeline.ingest import remote, remote_http


@dataclass
class Site:
    """What the loopback server serves, and how it misbehaves."""

    files: dict[str, bytes] = field(default_factory=dict)
    index: str | None = None
    ranges: bool = True
    break_first: bool = False  # every first response to a range breaks off half-way
    fail: int = 0  # answer this many requests with HTTP 503 first
    broken: set[str] = field(default_factory=set)

    def etag(self, name: str) -> str:
        return '"' + hashlib.md5(self.files[name]).hexdigest() + '"'


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _headers(self, status: int, name: str, length: int, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", site.etag(name))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()

        def _serve(self, body: bool) -> None:
            if site.fail:
                site.fail -= 1
                self.send_error(503)
                return
            name = self.path.lstrip("/")
            if name == "" and site.index is not None:
                page = site.index.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            if name not in site.files:
                self.send_error(404)
                return
            data, wanted = site.files[name], self.headers.get("Range", "")
            if not (site.ranges and wanted.startswith("bytes=")):
                self._headers(200, name, len(data))
                if body:
                    self.wfile.write(data)
                return
            first, _, last = wanted[6:].partition("-")
            start, end = int(first), min(int(last or len(data) - 1), len(data) - 1)
            part = data[start : end + 1]
            self._headers(206, name, len(part), {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
            key = f"{name}:{start}"
            if body and site.break_first and len(part) > 1000 and key not in site.broken:
                site.broken.add(key)
                self.wfile.write(part[: len(part) // 2])
                self.close_connection = True
                return
            if body:
                self.wfile.write(part)

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

    return Handler


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, str]]:
    """A loopback HTTP server on a free port; yields what it serves and its base URL."""
    monkeypatch.setattr(remote, "BACKOFF_FIRST_S", 0.0)
    served = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_head_probe_gives_size_and_validator_and_none_for_a_missing_file(site: tuple[Site, str]) -> None:
    served, base = site
    served.files["images_001.zip"] = os.urandom(5000)
    info = remote_http.http_head(base + "images_001.zip")
    assert info is not None
    assert (info.name, info.location, info.size) == ("images_001.zip", base + "images_001.zip", 5000)
    assert info.validator == served.etag("images_001.zip")
    assert remote_http.http_head(base + "images_002.zip") is None


def test_an_index_page_lists_only_the_files_of_that_folder(site: tuple[Site, str]) -> None:
    served, base = site
    served.index = (
        '<a href="images_001.zip">1</a> <a href="Data_Entry_2017.csv">csv</a> <a href="sub/images_002.zip">deep</a>'
        f' <a href="http://elsewhere.example/x.zip">away</a> <a href="{base}test_list.txt">absolute</a>'
    )
    assert remote_http.http_index(base) == ["Data_Entry_2017.csv", "images_001.zip", "test_list.txt"]
    served.index = None
    assert remote_http.http_index(base) == []  # a 404 is no index: every known name is probed instead


def test_ranged_reads_return_exact_bytes_and_resume_a_broken_response(site: tuple[Site, str]) -> None:
    served, base = site
    data = served.files["images_001.zip"] = os.urandom(200_000)
    served.break_first = True
    assert remote_http.supports_ranges(base + "images_001.zip")
    ranges = remote_http.HttpRanges(base + "images_001.zip", len(data), served.etag("images_001.zip"))
    assert ranges.read_range(10_000, 50_000) == data[10_000:60_000]
    assert ranges.read_range(199_000, 5000) == data[199_000:]
    assert "images_001.zip:10000" in served.broken  # the first answer broke off half-way and was resumed


def test_a_file_replaced_while_it_is_read_is_refused(site: tuple[Site, str]) -> None:
    served, base = site
    served.files["images_001.zip"] = os.urandom(10_000)
    ranges = remote_http.HttpRanges(base + "images_001.zip", 10_000, served.etag("images_001.zip"))
    assert len(ranges.read_range(0, 100)) == 100
    served.files["images_001.zip"] = os.urandom(10_000)
    with pytest.raises(BadDataError, match=r"images_001\.zip: the file changed while it was being read; rerun"):
        ranges.read_range(100, 100)


def test_a_server_without_range_support_is_spooled_to_a_temporary_file(site: tuple[Site, str]) -> None:
    served, base = site
    data = served.files["images_01.tar.gz"] = os.urandom(100_000)
    served.ranges = False
    assert not remote_http.supports_ranges(base + "images_01.tar.gz")
    info = remote_http.http_head(base + "images_01.tar.gz")
    assert info is not None
    spooled = remote_http.spool_http(info)
    assert spooled.read_range(500, 1000) == data[500:1500]
    copy = Path(spooled.location)
    assert copy.read_bytes() == data
    spooled.close()
    assert not copy.exists()  # the temporary copy goes with the reader


def test_a_server_that_keeps_failing_is_a_retryable_error_naming_the_url(site: tuple[Site, str]) -> None:
    served, base = site
    served.files["images_001.zip"] = b"x" * 100
    served.fail = 2  # two 503s, then a good answer: retried
    assert remote_http.http_head(base + "images_001.zip") is not None
    served.fail = 100
    with pytest.raises(SourceUnavailableError, match=rf"{base}images_001\.zip: unreachable after 8 attempts") as caught:
        remote_http.http_head(base + "images_001.zip")
    assert caught.value.retryable
