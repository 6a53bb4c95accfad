"""Checksummed, resumable downloads and Broden extraction, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from unitscope.broden.download import ArchiveError, BrodenRelease, fetch_broden
from unitscope.download import ChecksumError, DownloadError, download_file
from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main

LABELS = {1: "red-c", 2: "car", 3: "street-s"}


class Server:
    """Serves files from a directory with ``Range: bytes=N-`` support; logs every request's path and Range.

    ``cut_after`` = K makes the next response send only K bytes of its body and drop the connection.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append((self.path, self.headers.get("Range")))
                file = server.root / self.path.lstrip("/")
                if not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    served = Server(root)
    yield served
    served.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A tiny real Broden directory ``broden1_224/``: 3 images with object layers and scene labels."""
    root = tmp_path_factory.mktemp("src") / "broden1_224"
    rng = np.random.default_rng(0)
    with BrodenWriter(root, LABELS, image_size=16, label_size=8) as writer:
        for i in range(3):
            layer = rng.integers(0, 3, size=(8, 8))
            writer.add_image("ade20k", f"img{i}", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                             {"object": [layer]}, {"scene": [3]})
    return root


def _zip(directory: Path, archive: Path, top: str | None = None) -> Path:
    """Zip ``directory`` with its files under ``top/`` (default: the directory's own name), uncompressed."""
    top = top or directory.name
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for file in sorted(directory.rglob("*")):
            if file.is_file():
                zf.write(file, f"{top}/{file.relative_to(directory).as_posix()}")
    return archive


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _release(url: str, sha256: str | None = None) -> BrodenRelease:
    return BrodenRelease(224, url, sha256=sha256)


def test_download_and_extract(server, dataset, tmp_path, capsys) -> None:
    zipped = _zip(dataset, server.root / "broden1_224.zip")
    dest = tmp_path / "data"
    path = fetch_broden(224, dest, release=_release(f"{server.url}/broden1_224.zip"))
    assert path == dest / "broden1_224"
    assert _tree(path) == _tree(dataset)
    assert sorted(p.name for p in dest.iterdir()) == ["broden1_224"]  # zip removed, no staging left
    assert f"sha256 of broden1_224.zip is {_sha(zipped)} — not yet recorded" in capsys.readouterr().err
    # A second call finds the complete dataset and makes no request.
    count = len(server.requests)
    assert fetch_broden(224, dest, release=_release(f"{server.url}/broden1_224.zip")) == path
    assert len(server.requests) == count
    assert "already present" in capsys.readouterr().err


def test_resume_after_cut_connection(server, tmp_path) -> None:
    payload = np.random.default_rng(1).bytes(300_000)
    (server.root / "f.bin").write_bytes(payload)
    server.cut_after = 200_000
    dest = tmp_path / "dl" / "f.bin"
    result = download_file([f"{server.url}/f.bin"], dest, hashlib.sha256(payload).hexdigest(), backoff=0)
    (first, first_range), (second, second_range) = server.requests
    assert first == second == "/f.bin" and first_range is None
    # The resumed request starts where the kept part ends: what arrived before the cut, up to one lost chunk.
    assert second_range is not None and 0 < int(second_range.removeprefix("bytes=").removesuffix("-")) <= 200_000
    assert result == (dest, hashlib.sha256(payload).hexdigest(), f"{server.url}/f.bin")
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]  # the .part is gone


@pytest.mark.parametrize("kept", [3000, 10240], ids=["partial", "complete-but-not-renamed"])
def test_resume_of_an_earlier_partial_file(server, tmp_path, kept) -> None:
    payload = bytes(range(256)) * 40
    (server.root / "f.bin").write_bytes(payload)
    (tmp_path / "f.bin.part").write_bytes(payload[:kept])  # an earlier run stopped here
    download_file([f"{server.url}/f.bin"], tmp_path / "f.bin", hashlib.sha256(payload).hexdigest())
    assert server.requests == [("/f.bin", f"bytes={kept}-")]  # answered 206, or 416 when nothing is left
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert not (tmp_path / "f.bin.part").exists()


def test_corrupt_archive_leaves_nothing(server, dataset, tmp_path) -> None:
    data = bytearray(_zip(dataset, tmp_path / "good.zip").read_bytes())
    index = data.find(b"ade20k/img2.jpg")  # the last image: earlier members extract fine before the CRC error
    data[index + 200 : index + 210] = b"X" * 10
    (server.root / "broden1_224.zip").write_bytes(bytes(data))
    dest = tmp_path / "data"
    with pytest.raises(ArchiveError, match=r"broden1_224\.zip is a corrupt zip archive \(Bad CRC-32 for file '"):
        fetch_broden(224, dest, release=_release(f"{server.url}/broden1_224.zip"))
    assert list(dest.iterdir()) == []  # no dataset, no staging directory, the bad download removed


def test_zip_without_the_dataset_folder_is_refused(dataset, tmp_path) -> None:
    archive = _zip(dataset, tmp_path / "other.zip", top="broden1_227")
    dest = tmp_path / "data"
    with pytest.raises(ArchiveError, match=r"other\.zip is not a broden1_224 archive.*broden1_227/"):
        fetch_broden(224, dest, from_zip=archive)
    assert list(dest.iterdir()) == [] and archive.is_file()


def test_checksum_mismatch_removes_the_file(server, dataset, tmp_path) -> None:
    _zip(dataset, server.root / "broden1_224.zip")
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_broden(224, dest, release=_release(f"{server.url}/broden1_224.zip", sha256="0" * 64))
    assert list(dest.iterdir()) == []


def test_server_down_is_one_clear_message(tmp_path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/broden1_224.zip"
    dest = tmp_path / "data"
    with pytest.raises(DownloadError) as caught:
        fetch_broden(224, dest, release=_release(url), backoff=0)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{url} (connection refused" in message and "--mirror" in message and "--from-zip" in message
    assert list(dest.iterdir()) == []


def test_mirrors_are_tried_in_order(server, dataset, tmp_path) -> None:
    (server.root / "good").mkdir()
    _zip(dataset, server.root / "good" / "broden1_224.zip")
    mirrors = [f"{server.url}/missing/broden1_224.zip", f"{server.url}/good/"]  # a full URL, then a base URL
    path = fetch_broden(224, tmp_path / "data", mirrors, release=_release(f"{server.url}/official.zip"))
    assert [p for p, _ in server.requests] == ["/missing/broden1_224.zip", "/good/broden1_224.zip"]
    assert _tree(path) == _tree(dataset)


def test_from_zip_keeps_the_archive_and_checks_the_sha256(dataset, tmp_path) -> None:
    archive = _zip(dataset, tmp_path / "mine.zip")
    with pytest.raises(ChecksumError, match=r"mine\.zip has sha256"):
        fetch_broden(224, tmp_path / "data", from_zip=archive, sha256="f" * 64)
    path = fetch_broden(224, tmp_path / "data", from_zip=archive, sha256=_sha(archive))
    assert _tree(path) == _tree(dataset)
    assert archive.is_file()


def test_cli_success_and_failure(server, dataset, tmp_path) -> None:
    zipped = _zip(dataset, server.root / "broden1_224.zip")
    runner = CliRunner()
    dest = tmp_path / "data"
    args = ["download", "broden", "--variant", "224", "--dest", str(dest)]
    ok = runner.invoke(main, [*args, "--mirror", server.url, "--sha256", _sha(zipped).upper()])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == str(dest / "broden1_224")
    assert _tree(dest / "broden1_224") == _tree(dataset)

    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip at all")
    failed = runner.invoke(main, [*args[:-1], str(tmp_path / "other"), "--from-zip", str(broken)])
    assert failed.exit_code == 1
    expected = f"Error: {broken} is a corrupt zip archive (File is not a zip file); download it again"
    assert failed.output.strip().splitlines() == [expected]
    assert list((tmp_path / "other").iterdir()) == []
