"""Verified, resumable, atomic downloads, against a local HTTP server serving bytes from memory."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import focalcal.data.idx as idx
from focalcal.data.download import RemoteFile, data_root, fetch, verify

PAYLOAD = random.Random(0).randbytes(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
NAME = "payload.bin"


@dataclass(frozen=True)
class Request:
    path: str
    range: str | None


class FileServer(ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes); the attributes below switch on misbehaviour."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self.ignore_range = False  # answer a range request with 200 and the whole file
        self.cut_after: int | None = None  # announce the full length, send this many bytes, close
        self.not_found = False  # answer 404 to everything
        self.wrong_bytes = False  # serve other bytes of the same length
        self.chunked = False  # Transfer-Encoding: chunked (HTTP/1.1), no Content-Length

    def url(self, name: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{name}"


class _Handler(BaseHTTPRequestHandler):
    server: FileServer
    protocol_version = "HTTP/1.1"  # for chunked responses; every response has a length or closes

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        server.requests.append(Request(self.path, self.headers.get("Range")))
        data = server.files.get(self.path.lstrip("/"))
        if data is None or server.not_found:
            self.send_error(404)
            return
        if server.wrong_bytes:
            data = bytes(byte ^ 0xFF for byte in data)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not server.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.cut_after is not None and server.cut_after < len(body)
        if cut:
            body = body[: server.cut_after]
            self.close_connection = True
        if server.chunked:
            for i in range(0, len(body), 10_000):
                piece = body[i : i + 10_000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            if not cut:
                self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)
        self.wfile.flush()


@pytest.fixture
def server() -> Iterator[FileServer]:
    httpd = FileServer()
    httpd.files[NAME] = PAYLOAD
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def remote(server: FileServer) -> RemoteFile:
    return RemoteFile(NAME, server.url(NAME), md5=MD5)


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _count_digests(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    digest = RemoteFile.digest

    def counting(self: RemoteFile, path: Path) -> str:
        calls.append(path)
        return digest(self, path)

    monkeypatch.setattr(RemoteFile, "digest", counting)
    return calls


# --- fresh downloads ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["md5", "sha256", "MD5-uppercase"])
def test_fresh_download(server: FileServer, tmp_path: Path, algorithm: str) -> None:
    checksum = {"md5": {"md5": MD5}, "sha256": {"sha256": SHA256}}.get(
        algorithm, {"md5": MD5.upper()}
    )
    remote = RemoteFile(NAME, server.url(NAME), **checksum)
    root = tmp_path / "not" / "yet" / "there"
    path = fetch(remote, root, download=True)
    assert path == root / NAME
    assert path.read_bytes() == PAYLOAD
    assert not _part(path).exists()
    stat = path.stat()
    assert _stamp(path).read_text() == f"{stat.st_size} {stat.st_mtime_ns}"
    assert server.requests == [Request(f"/{NAME}", None)]
    assert sorted(p.name for p in root.iterdir()) == [NAME, NAME + ".verified"]


def test_download_hashes_once_and_later_fetches_neither_download_nor_hash(
    server: FileServer, remote: RemoteFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_digests(monkeypatch)
    path = fetch(remote, tmp_path, download=True)
    assert len(calls) == 1  # the .part file; the stamp spares the final file
    assert fetch(remote, tmp_path, download=True) == path
    assert fetch(remote, tmp_path) == path
    assert len(calls) == 1
    assert len(server.requests) == 1


# --- interrupted and resumed downloads ---------------------------------------------------------


def fails_keeping_part(remote: RemoteFile, root: Path, path: Path) -> None:
    """The download fails with an OSError naming the URL and the destination; no final file."""
    with pytest.raises(OSError, match="could not download") as info:
        fetch(remote, root, download=True)
    assert remote.url in str(info.value)
    assert str(path) in str(info.value)
    assert not path.exists()


def test_interrupted_download_keeps_part_and_resumes_with_range(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    cut = 100_000
    server.cut_after = cut
    path = tmp_path / NAME
    fails_keeping_part(remote, tmp_path, path)
    assert not _stamp(path).exists()
    assert _part(path).read_bytes() == PAYLOAD[:cut]

    server.cut_after = None
    assert fetch(remote, tmp_path, download=True) == path
    assert path.read_bytes() == PAYLOAD
    assert not _part(path).exists()
    assert [r.range for r in server.requests] == [None, f"bytes={cut}-"]


def test_interrupted_twice_then_resumed(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    server.cut_after = 100_000
    for _ in range(2):
        with pytest.raises(OSError, match=re.escape(remote.url)):
            fetch(remote, tmp_path, download=True)
    assert _part(tmp_path / NAME).read_bytes() == PAYLOAD[:200_000]
    server.cut_after = None
    assert fetch(remote, tmp_path, download=True).read_bytes() == PAYLOAD
    assert [r.range for r in server.requests] == [None, "bytes=100000-", "bytes=200000-"]


def test_interrupted_chunked_download(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    # Without a Content-Length, http.client itself raises IncompleteRead (an HTTPException, not an
    # OSError) when the chunked stream breaks off: it must become the same clear OSError.
    server.chunked = True
    assert fetch(remote, tmp_path / "whole", download=True).read_bytes() == PAYLOAD
    server.cut_after = 100_000
    path = tmp_path / NAME
    fails_keeping_part(remote, tmp_path, path)
    kept = _part(path).read_bytes()  # a prefix: what was written before the read that failed
    assert PAYLOAD.startswith(kept)
    assert len(kept) < len(PAYLOAD)
    server.cut_after = None
    assert fetch(remote, tmp_path, download=True).read_bytes() == PAYLOAD
    assert not _part(path).exists()


def test_server_ignoring_the_range_restarts_from_zero(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    part = _part(tmp_path / NAME)
    part.write_bytes(PAYLOAD[:1234])
    server.ignore_range = True
    path = fetch(remote, tmp_path, download=True)
    assert path.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.requests == [Request(f"/{NAME}", "bytes=1234-")]


def test_complete_part_file_is_finished_on_416(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    part = _part(tmp_path / NAME)
    part.write_bytes(PAYLOAD)  # e.g. killed between the last write and the rename
    path = fetch(remote, tmp_path, download=True)
    assert path.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.requests == [Request(f"/{NAME}", f"bytes={len(PAYLOAD)}-")]


def test_corrupted_part_file_is_deleted_and_the_next_try_starts_over(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    part = _part(tmp_path / NAME)
    part.write_bytes(b"\0" * 1000)  # resumed onto garbage: the checksum catches it
    with pytest.raises(ValueError, match=re.escape(remote.url)):
        fetch(remote, tmp_path, download=True)
    assert not part.exists()
    assert not (tmp_path / NAME).exists()
    assert fetch(remote, tmp_path, download=True).read_bytes() == PAYLOAD
    assert [r.range for r in server.requests] == ["bytes=1000-", None]


# --- failures ----------------------------------------------------------------------------------


def test_wrong_bytes_from_the_server(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    server.wrong_bytes = True
    with pytest.raises(ValueError, match="does not match the published") as info:
        fetch(remote, tmp_path, download=True)
    assert remote.url in str(info.value)
    assert MD5 in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no final file, no .part, no stamp


def test_not_found(server: FileServer, remote: RemoteFile, tmp_path: Path) -> None:
    server.not_found = True
    with pytest.raises(OSError, match="404") as info:
        fetch(remote, tmp_path, download=True)
    assert remote.url in str(info.value)
    assert str(tmp_path / NAME) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = RemoteFile(NAME, f"http://127.0.0.1:{port}/{NAME}", md5=MD5)
    with pytest.raises(OSError, match="could not download") as info:
        fetch(remote, tmp_path, download=True)
    assert remote.url in str(info.value)
    assert str(tmp_path / NAME) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_without_download(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="pass download=True to load_dataset") as info:
        fetch(remote, tmp_path)
    assert "--download" not in str(info.value)  # no such command-line flag
    assert remote.url in str(info.value)
    assert str(tmp_path / NAME) in str(info.value)
    assert server.requests == []
    assert list(tmp_path.iterdir()) == []


# --- existing files and the verification stamp -------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_existing_file_is_reported_not_replaced(
    server: FileServer, remote: RemoteFile, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / NAME
    data = PAYLOAD[:1000] if damage == "truncated" else b"x" + PAYLOAD[1:]
    path.write_bytes(data)
    with pytest.raises(ValueError, match="truncated or corrupted") as info:
        fetch(remote, tmp_path, download=True)
    assert str(path) in str(info.value)
    assert path.read_bytes() == data  # the user's file is left alone, not deleted or replaced
    assert not _stamp(path).exists()
    assert server.requests == []  # an existing file is never re-downloaded over


def test_stamp_skips_rehashing_until_the_file_changes(
    server: FileServer, remote: RemoteFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / NAME
    path.write_bytes(PAYLOAD)  # put there by hand: no stamp yet
    calls = _count_digests(monkeypatch)
    assert fetch(remote, tmp_path) == path
    assert calls == [path]
    assert _stamp(path).exists()
    fetch(remote, tmp_path)
    verify(remote, path)
    assert calls == [path]

    # Same size, other bytes, a later mtime: the stamp no longer matches, so it is re-hashed.
    mtime_ns = path.stat().st_mtime_ns
    path.write_bytes(b"x" + PAYLOAD[1:])
    os.utime(path, ns=(mtime_ns + 1_000_000_000, mtime_ns + 1_000_000_000))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        fetch(remote, tmp_path)
    assert calls == [path, path]

    # Truncated (a new size): re-hashed as well.
    path.write_bytes(PAYLOAD[:-1])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        fetch(remote, tmp_path)
    assert len(calls) == 3
    assert server.requests == []


def test_stale_stamp_of_a_deleted_file_does_not_vouch_for_a_new_one(
    server: FileServer, remote: RemoteFile, tmp_path: Path
) -> None:
    path = fetch(remote, tmp_path, download=True)
    stamp = _stamp(path).read_text()
    path.unlink()
    path.write_bytes(b"y" * len(PAYLOAD))
    os.utime(path, ns=(int(stamp.split()[1]) + 10**9,) * 2)
    with pytest.raises(ValueError, match="truncated or corrupted"):
        fetch(remote, tmp_path, download=True)


# --- where files live, and what a RemoteFile is ------------------------------------------------


def test_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FOCALCAL_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert data_root() == tmp_path / "env"
    monkeypatch.setenv("FOCALCAL_DATA", "")  # set but empty: as if unset
    assert data_root() == home / ".cache" / "focalcal"
    monkeypatch.delenv("FOCALCAL_DATA")
    assert data_root() == home / ".cache" / "focalcal"
    assert data_root(None) == home / ".cache" / "focalcal"


def test_fetch_uses_the_environment_root(
    server: FileServer, remote: RemoteFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOCALCAL_DATA", str(tmp_path / "env"))
    assert fetch(remote, download=True) == tmp_path / "env" / NAME


@pytest.mark.parametrize("checksums", [{}, {"md5": MD5, "sha256": SHA256}])
def test_remote_file_needs_exactly_one_checksum(checksums: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one of md5 and sha256"):
        RemoteFile(NAME, "http://127.0.0.1/x", **checksums)


# --- end to end through the Fashion-MNIST loader -----------------------------------------------


def _idx(shape: tuple[int, ...], values: bytes) -> bytes:
    header = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
    return header + values


def test_load_fashion_mnist_downloads_from_the_server(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(1)
    images = rng.randbytes(5 * 28 * 28)
    labels = bytes(rng.randrange(10) for _ in range(5))
    raw = {
        "t10k-images-idx3-ubyte.gz": _idx((5, 28, 28), images),
        "t10k-labels-idx1-ubyte.gz": _idx((5,), labels),
    }
    files, content_md5 = {}, {}
    for name, content in raw.items():
        server.files[name] = gzip.compress(content, mtime=0)
        files[name] = RemoteFile(
            name, server.url(name), md5=hashlib.md5(server.files[name]).hexdigest()
        )
        content_md5[name] = hashlib.md5(content).hexdigest()
    monkeypatch.setattr(
        idx,
        "FILES",
        {"test": (files["t10k-images-idx3-ubyte.gz"], files["t10k-labels-idx1-ubyte.gz"])},
    )
    monkeypatch.setattr(idx, "CONTENT_MD5", content_md5)

    with pytest.raises(FileNotFoundError, match=re.escape(server.url("t10k-images-idx3-ubyte.gz"))):
        idx.load_fashion_mnist(tmp_path, "test")
    x, y = idx.load_fashion_mnist(tmp_path, "test", download=True)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (5,) and y.dtype == torch.int64
    assert torch.equal(x.flatten(), torch.tensor(list(images), dtype=torch.uint8))
    assert torch.equal(y, torch.tensor(list(labels)))
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == sorted(
        [*raw, *(name + ".verified" for name in raw)]
    )
    assert len(server.requests) == 2

    x2, y2 = idx.load_fashion_mnist(tmp_path, "test")  # now local: no further requests
    assert torch.equal(x2, x) and torch.equal(y2, y)
    assert len(server.requests) == 2
