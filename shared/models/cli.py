"""`facewire-models list|fetch NAME|verify|where`: install and check the optional pretrained models.

fetch downloads into `<file>.part`, resumes a partial download with an HTTP Range request, checks the
size and sha256, and only then renames the file into place (atomically), so a partial or corrupt
download never sits where a loader would pick it up.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from facewire.shared.models.onnx import SessionConfig
from facewire.shared.models.registry import (
    ArchiveSpec,
    ModelError,
    ModelSpec,
    Registry,
    file_sha256,
    how_to_get,
)

_CHUNK = 1 << 16
_USER_AGENT = "facewire-models/1"
EXIT_OK, EXIT_BAD, EXIT_FETCH = 0, 1, 2


class FetchError(RuntimeError):
    pass


class Progress:
    """A one-line progress bar on a terminal; a start and an end line otherwise."""

    def __init__(self, label: str, total: int | None, stream: IO[str] | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.done = 0
        self._first = 0

    def begin(self, offset: int) -> None:
        self.done = self._first = offset
        if offset:
            self.stream.write(f"{self.label}: resuming at {offset / 1e6:.1f} MB\n")
        elif not self.tty:
            self.stream.write(f"{self.label}: downloading\n")

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last >= 0.2:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = (self.done - self._first) / max(now - self.start, 1e-6) / 1e6
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {frac * 100:5.1f}% {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        else:
            text = f"{self.label} {self.done / 1e6:.1f} MB"
        self.stream.write(f"\r{text} {rate:.1f} MB/s ")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self._draw(time.monotonic())
        self.stream.write(f"\n{self.label}: {self.done / 1e6:.1f} MB\n" if self.tty else f"{self.label}: done\n")
        self.stream.flush()


def download(url: str, part: Path, total: int | None, progress: Progress, timeout: float = 30.0) -> None:
    """Download url into `part`, continuing from its current length when the server honours Range."""
    have = part.stat().st_size if part.exists() else 0
    if total is not None and have > total:
        part.unlink()
        have = 0
    if total is not None and have == total:
        return
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs come from the manifest
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial file is already whole
            return
        raise
    with response:
        status = getattr(response, "status", 200)
        if status == 206 and have:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise FetchError(f"{url}: server resumed at the wrong offset ({content_range!r})")
            mode = "ab"
        else:
            have, mode = 0, "wb"  # the server ignored Range: start over
        progress.begin(have)
        with part.open(mode) as fh:
            while chunk := response.read1(_CHUNK):
                fh.write(chunk)
                progress.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    progress.finish()


def _verify_part(part: Path, sha256: str | None, total: int | None) -> str | None:
    """None when the part file is right, else the reason it is not."""
    size = part.stat().st_size
    if total is not None and size != total:
        return f"{size} bytes, expected {total}"
    if sha256 is not None:
        actual = file_sha256(part)
        if actual != sha256:
            return f"sha256 {actual}, expected {sha256}"
    return None


def fetch_verified(urls: Sequence[str], final: Path, sha256: str | None, total: int | None, label: str) -> None:
    """Try each URL in turn; the file appears at `final` only once its size and hash are right."""
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    errors: list[str] = []
    for url in urls:
        try:
            download(url, part, total, Progress(label, total))
        except (urllib.error.URLError, OSError, FetchError) as exc:
            # A dropped connection keeps the part file so the next try resumes it.
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if not part.exists():
            errors.append(f"{url}: nothing downloaded")
            continue
        problem = _verify_part(part, sha256, total)
        if problem is not None:
            part.unlink()  # a wrong file cannot be resumed into a right one
            errors.append(f"{url}: downloaded file rejected ({problem})")
            continue
        os.replace(part, final)
        return
    raise FetchError("; ".join(errors) or "no download URL")


def _extract_member(archive_path: Path, archive: ArchiveSpec, spec: ModelSpec, final: Path) -> None:
    part = final.with_name(final.name + ".part")
    with zipfile.ZipFile(archive_path) as zf:
        members = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == archive.member]
        if not members:
            raise FetchError(f"{archive.url}: no member {archive.member!r} in the archive")
        with zf.open(members[0]) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    problem = _verify_part(part, spec.sha256, spec.bytes)
    if problem is not None:
        part.unlink()
        raise FetchError(f"{archive.member} from {archive.url} rejected ({problem})")
    os.replace(part, final)


def fetch_model(registry: Registry, name: str) -> Path:
    spec = registry.spec(name)
    final = registry.path(name)
    status = registry.check_file(name).status
    if status == "ok":
        return final
    if status == "unverifiable":
        print(f"{name}: {final} is present but the manifest has no hash to check it against; left as it is")
        return final
    final.unlink(missing_ok=True)  # wrong size or hash: never resume into it
    print(f"{name}: {spec.licence}")
    errors: list[str] = []
    try:
        if spec.urls:
            fetch_verified(spec.urls, final, spec.sha256, spec.bytes, name)
            return final
    except FetchError as exc:
        errors.append(str(exc))
    if spec.archive is not None:
        archive_path = registry.models_dir / ".downloads" / spec.archive.filename
        try:
            fetch_verified([spec.archive.url], archive_path, spec.archive.sha256, spec.archive.bytes,
                           spec.archive.filename)
            _extract_member(archive_path, spec.archive, spec, final)
            return final
        except (FetchError, zipfile.BadZipFile, OSError) as exc:
            errors.append(str(exc))
    raise FetchError(
        f"could not fetch {name!r} (offline, or every location failed):\n  " + "\n  ".join(errors)
        + "\n" + how_to_get(spec, final)
    )


def _cmd_list(registry: Registry) -> int:
    print(f"models directory: {registry.models_dir}")
    for group, members in registry.groups.items():
        print(f"  group {group}: {' '.join(members)}")
    for name, spec in registry.specs.items():
        path = registry.path(name)
        if not path.is_file():
            state = "missing"
        elif spec.bytes is not None and path.stat().st_size != spec.bytes:
            state = "wrong size"
        else:
            state = "present"
        size = f"{spec.bytes / 1e6:7.1f} MB" if spec.bytes else "      ? MB"
        print(f"  {name:18} {state:10} {size}  {spec.file:28} {spec.licence}")
    return EXIT_OK


def _cmd_verify(registry: Registry, names: Sequence[str], signature: bool) -> int:
    bad = 0
    for name in names or registry.names:
        check = registry.check_file(name)
        spec = registry.spec(name)
        if check.status == "missing":
            print(f"{name}: not installed ({check.path})")
            continue
        if check.status == "unverifiable":
            bad += 1
            print(f"{name}: UNVERIFIABLE - no published sha256 in the manifest; file sha256 {check.actual_sha256}")
            continue
        if not check.ok:
            bad += 1
            detail = (f"{check.actual_bytes} bytes, expected {spec.bytes}" if check.status == "size"
                      else f"sha256 {check.actual_sha256}, expected {spec.sha256}")
            print(f"{name}: BAD ({detail}) at {check.path}; re-fetch with `facewire-models fetch {name}`")
            continue
        if signature:
            try:
                registry.load(name, SessionConfig(providers="cpu", threads=1))
            except ModelError as exc:
                bad += 1
                print(f"{name}: BAD signature: {exc}")
                continue
        print(f"{name}: ok ({check.path})")
    return EXIT_BAD if bad else EXIT_OK


def _cmd_where(registry: Registry) -> int:
    print(f"models directory: {registry.models_dir}  (set FACEWIRE_MODELS to move it)")
    print(f"manifest: {registry.manifest_path}")
    for name in registry.names:
        print(f"  {name:18} {registry.path(name)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facewire-models",
        description="Install and check facewire's optional pretrained models (verified by size, sha256 and "
        "ONNX signature). insightface models are for non-commercial research use only.",
    )
    parser.add_argument("--models-dir", type=Path, help="models directory (default: FACEWIRE_MODELS or user data dir)")
    parser.add_argument("--manifest", type=Path, help="manifest file (default: FACEWIRE_MANIFEST or the shipped one)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log provider choices and more")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the models facewire can use and whether they are present")
    fetch = sub.add_parser("fetch", help="download, verify and install models")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="model or group name (e.g. buffalo_l)")
    fetch.add_argument("--all", action="store_true", help="every model in the manifest")
    verify = sub.add_parser("verify", help="check size, sha256 and ONNX signature of installed models")
    verify.add_argument("names", nargs="*", metavar="NAME")
    verify.add_argument("--no-signature", action="store_true", help="skip opening the models (hash only)")
    sub.add_parser("where", help="where models are looked for")
    variant = sub.add_parser("variant", help="make an int8 or fp16 variant of an installed model and measure it")
    variant.add_argument("name", metavar="NAME")
    variant.add_argument("kind", choices=("int8", "fp16"))
    return parser


def _cmd_variant(registry: Registry, name: str, kind: str) -> int:
    from facewire.shared.models.variants import MAX_REL_RMSE, MIN_COSINE, make_variant

    path, fidelity = make_variant(registry, name, "int8" if kind == "int8" else "fp16")
    print(f"{name} {kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    for f in fidelity:
        verdict = "keeps quality" if f.keeps_quality else "DEGRADES"
        print(f"  {f.output}: cosine {f.cosine:.5f}, rel RMSE {f.rel_rmse:.4f}, max |err| {f.max_abs:.4g} -> {verdict}")
    ok = all(f.keeps_quality for f in fidelity)
    if not ok:
        print(f"  (needs cosine >= {MIN_COSINE} and rel RMSE <= {MAX_REL_RMSE} on every output; keep using fp32)")
    return EXIT_OK if ok else EXIT_BAD


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        registry = Registry(args.manifest, args.models_dir)
        if args.command == "list":
            return _cmd_list(registry)
        if args.command == "where":
            return _cmd_where(registry)
        if args.command == "variant":
            return _cmd_variant(registry, args.name, args.kind)
        if args.command == "verify":
            return _cmd_verify(registry, registry.expand(args.names), signature=not args.no_signature)
        names = registry.names if args.all else registry.expand(args.names)
        if not names:
            print("facewire-models fetch: name a model (see `facewire-models list`) or pass --all", file=sys.stderr)
            return EXIT_FETCH
        failed = 0
        for name in names:
            try:
                print(f"{name}: installed at {fetch_model(registry, name)}")
            except FetchError as exc:
                failed += 1
                print(str(exc), file=sys.stderr)
        return EXIT_FETCH if failed else EXIT_OK
    except ModelError as exc:
        print(f"facewire-models: {exc}", file=sys.stderr)
        return EXIT_FETCH
    except (TimeoutError, KeyboardInterrupt):
        print("facewire-models: interrupted; a partial download resumes on the next fetch", file=sys.stderr)
        return EXIT_FETCH


if __name__ == "__main__":
    sys.exit(main())
