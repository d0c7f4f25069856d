"""facewire-models fetch against a local HTTP server on 127.0.0.1: resume, bad hash, atomic rename."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import synthetic_onnx as so

from facewire.shared.models.cli import FetchError, fetch_model, main
from facewire.shared.models.registry import Registry

REAL_MANIFEST = Path(__file__).resolve().parent.parent / "models" / "manifest.toml"


@dataclass
class Served:
    files: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    ranges: list[str | None] = field(default_factory=list)
    # Called between the two halves of a response, to look at the disk mid-download.
    midway: list = field(default_factory=list)


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            header = self.headers.get("Range")
            served.ranges.append(header)
            start = 0
            if header and served.honour_range:
                start = int(header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            half = len(part) // 2
            self.wfile.write(part[:half])
            self.wfile.flush()
            for check in served.midway:
                check()
            self.wfile.write(part[half:])

    return Handler


@pytest.fixture()
def server() -> Iterator[tuple[str, Served]]:
    served = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def _registry(tmp_path: Path, name: str, data: bytes, urls: list[str]) -> Registry:
    entry = (hashlib.sha256(data).hexdigest(), len(data))
    manifest = so.write_manifest(tmp_path / "manifest.toml", REAL_MANIFEST, {name: entry}, {name: urls})
    return Registry(manifest, tmp_path / "models")


MODEL = so.rvm_model().SerializeToString()


def test_fetch_installs_verified_file_atomically(tmp_path: Path, server: tuple[str, Served]) -> None:
    base, served = server
    served.files["/rvm.onnx"] = MODEL
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"{base}/rvm.onnx"])
    final = reg.path("rvm_mobilenetv3")
    part = final.with_name(final.name + ".part")
    seen: list[tuple[bool, bool]] = []

    def look() -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not part.exists():
            time.sleep(0.01)  # the client opens the .part once the headers are in
        seen.append((final.exists(), part.exists()))

    served.midway.append(look)
    assert fetch_model(reg, "rvm_mobilenetv3") == final
    assert seen == [(False, True)]  # mid-download only the .part exists
    assert final.read_bytes() == MODEL and not final.with_name(final.name + ".part").exists()
    assert reg.check_file("rvm_mobilenetv3").ok
    reg.load("rvm_mobilenetv3")


def test_fetch_resumes_a_partial_download(tmp_path: Path, server: tuple[str, Served]) -> None:
    base, served = server
    served.files["/rvm.onnx"] = MODEL
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"{base}/rvm.onnx"])
    part = reg.path("rvm_mobilenetv3").with_name("rvm_mobilenetv3_fp32.onnx.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(MODEL[:300])
    fetch_model(reg, "rvm_mobilenetv3")
    assert served.ranges == ["bytes=300-"]
    assert reg.path("rvm_mobilenetv3").read_bytes() == MODEL


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path, server: tuple[str, Served]) -> None:
    base, served = server
    served.files["/rvm.onnx"] = MODEL
    served.honour_range = False
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"{base}/rvm.onnx"])
    part = reg.path("rvm_mobilenetv3").with_name("rvm_mobilenetv3_fp32.onnx.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 300)
    fetch_model(reg, "rvm_mobilenetv3")
    assert reg.path("rvm_mobilenetv3").read_bytes() == MODEL


def test_bad_hash_leaves_no_file_and_tries_the_next_url(tmp_path: Path, server: tuple[str, Served]) -> None:
    base, served = server
    evil = bytearray(MODEL)
    evil[10] ^= 0x55
    served.files["/evil.onnx"] = bytes(evil)
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"{base}/evil.onnx"])
    with pytest.raises(FetchError, match="sha256"):
        fetch_model(reg, "rvm_mobilenetv3")
    assert list((tmp_path / "models").iterdir()) == []
    served.files["/good.onnx"] = MODEL
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"{base}/evil.onnx", f"{base}/good.onnx"])
    fetch_model(reg, "rvm_mobilenetv3")
    assert reg.check_file("rvm_mobilenetv3").ok


def test_corrupt_installed_file_is_replaced(tmp_path: Path, server: tuple[str, Served]) -> None:
    base, served = server
    served.files["/rvm.onnx"] = MODEL
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"{base}/rvm.onnx"])
    reg.models_dir.mkdir()
    reg.path("rvm_mobilenetv3").write_bytes(MODEL[:-1] + b"\0")
    fetch_model(reg, "rvm_mobilenetv3")
    assert reg.check_file("rvm_mobilenetv3").ok


def test_archive_member_is_extracted_and_verified(tmp_path: Path, server: tuple[str, Served]) -> None:
    base, served = server
    member = so.scrfd_model().SerializeToString()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("buffalo_l/det_10g.onnx", member)
        zf.writestr("buffalo_l/other.onnx", b"other")
    archive = buf.getvalue()
    served.files["/buffalo_l.zip"] = archive
    entry = (hashlib.sha256(member).hexdigest(), len(member))
    manifest = so.write_manifest(tmp_path / "m.toml", REAL_MANIFEST, {"det_10g": entry}, {"det_10g": []})
    text = manifest.read_text().replace(
        'urls = []\n',
        f'urls = []\narchive = {{ url = "{base}/buffalo_l.zip", sha256 = "{hashlib.sha256(archive).hexdigest()}", '
        f'bytes = {len(archive)}, member = "det_10g.onnx" }}\n', 1)
    manifest.write_text(text)
    reg = Registry(manifest, tmp_path / "models")
    fetch_model(reg, "det_10g")
    assert reg.path("det_10g").read_bytes() == member
    reg.load("det_10g")


def test_offline_fetch_says_where_to_put_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"http://127.0.0.1:{port}/rvm.onnx"])
    code = main(["--manifest", str(reg.manifest_path), "--models-dir", str(reg.models_dir), "fetch", "rvm_mobilenetv3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "offline" in err and str(reg.path("rvm_mobilenetv3")) in err and f"127.0.0.1:{port}/rvm.onnx" in err


def test_cli_verify_list_where(tmp_path: Path, server: tuple[str, Served], capsys: pytest.CaptureFixture[str]) -> None:
    base, served = server
    served.files["/rvm.onnx"] = MODEL
    reg = _registry(tmp_path, "rvm_mobilenetv3", MODEL, [f"{base}/rvm.onnx"])
    args = ["--manifest", str(reg.manifest_path), "--models-dir", str(reg.models_dir)]
    assert main([*args, "fetch", "rvm_mobilenetv3"]) == 0
    assert main([*args, "verify", "rvm_mobilenetv3"]) == 0
    assert "rvm_mobilenetv3: ok" in capsys.readouterr().out
    assert main([*args, "list"]) == 0
    out = capsys.readouterr().out
    assert "rvm_mobilenetv3" in out and "present" in out and "NON-COMMERCIAL" in out
    assert main([*args, "where"]) == 0
    assert str(reg.models_dir) in capsys.readouterr().out
    path = reg.path("rvm_mobilenetv3")
    path.write_bytes(path.read_bytes()[:-1] + b"\1")
    assert main([*args, "verify"]) == 1
    assert "BAD" in capsys.readouterr().out
    assert main([*args, "fetch"]) == 2
