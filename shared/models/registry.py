"""The model registry: the manifest, the user models directory, and verified loading.

A model loads only when its file has the manifest's size and sha256 and its ONNX graph has the
manifest's input/output names, ranks and dtypes. Every refusal names the file, the expected hash and
how to get the right file (`facewire-models fetch NAME`, or the URL and the path to put it at).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from facewire.models import shipped
from facewire.shared.models.onnx import BoundSession, ProviderUnavailable, SessionConfig, create_session, default_threads

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

UNKNOWN_HASH = "unknown"
_CHUNK = 1 << 20


class ModelError(RuntimeError):
    """Base of every registry error; the message says what to do."""


class ManifestError(ModelError):
    pass


class UnknownModelError(ModelError):
    pass


class ModelNotInstalledError(ModelError):
    pass


class ModelIntegrityError(ModelError):
    """Wrong size or hash: partial, corrupt or a different file."""


class ModelSignatureError(ModelError):
    """The file is a model, but not one with the inputs/outputs the manifest describes."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class ArchiveSpec:
    url: str
    sha256: str
    bytes: int
    member: str

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file: str
    sha256: str | None  # None: no trustworthy published hash
    bytes: int | None
    licence: str
    urls: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    normalisation: Mapping[str, Any]
    description: str = ""
    archive: ArchiveSpec | None = None

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)


def _need(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ManifestError(f"{where}: missing field {key!r}")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ManifestError(f"{where}.{key}: expected {kind}, got {type(value).__name__}")
    return value


def _tensor(raw: Any, where: str) -> TensorSpec:
    if not isinstance(raw, Mapping):
        raise ManifestError(f"{where}: expected a table")
    shape = _need(raw, "shape", list, where)
    for i, dim in enumerate(shape):
        if isinstance(dim, bool) or not isinstance(dim, int | str):
            raise ManifestError(f"{where}.shape[{i}]: a dimension is an integer or a symbolic name")
    return TensorSpec(_need(raw, "name", str, where), tuple(shape), _need(raw, "dtype", str, where))


def _hash_field(value: str, where: str) -> str | None:
    value = value.strip().lower()
    if value == UNKNOWN_HASH:
        return None
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ManifestError(f"{where}.sha256: expected 64 hex digits or {UNKNOWN_HASH!r}")
    return value


def _model(name: str, raw: Mapping[str, Any]) -> ModelSpec:
    where = f"models.{name}"
    size = raw.get("bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ManifestError(f"{where}.bytes: expected a positive integer")
    archive = None
    if "archive" in raw:
        a = raw["archive"]
        aw = f"{where}.archive"
        archive = ArchiveSpec(
            url=_need(a, "url", str, aw),
            sha256=_hash_field(_need(a, "sha256", str, aw), aw) or "",
            bytes=_need(a, "bytes", int, aw),
            member=_need(a, "member", str, aw),
        )
        if not archive.sha256:
            raise ManifestError(f"{aw}.sha256: an archive needs a known hash")
    file = _need(raw, "file", str, where)
    if Path(file).name != file:
        raise ManifestError(f"{where}.file: a bare file name, not a path ({file!r})")
    return ModelSpec(
        name=name,
        file=file,
        sha256=_hash_field(_need(raw, "sha256", str, where), where),
        bytes=size,
        licence=_need(raw, "licence", str, where),
        urls=tuple(_need(raw, "urls", list, where)),
        inputs=tuple(_tensor(t, f"{where}.inputs[{i}]") for i, t in enumerate(_need(raw, "inputs", list, where))),
        outputs=tuple(_tensor(t, f"{where}.outputs[{i}]") for i, t in enumerate(_need(raw, "outputs", list, where))),
        normalisation=dict(raw.get("normalisation", {})),
        description=str(raw.get("description", "")),
        archive=archive,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"model manifest not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"model manifest {path} is not valid TOML: {exc}") from exc


def parse_groups(path: Path, models: Mapping[str, ModelSpec]) -> dict[str, tuple[str, ...]]:
    """Named sets of models (`[groups]`), e.g. buffalo_l = the three insightface analysis models."""
    groups = _read_toml(path).get("groups", {})
    if not isinstance(groups, Mapping):
        raise ManifestError(f"model manifest {path}: [groups] must be a table")
    out: dict[str, tuple[str, ...]] = {}
    for name, members in groups.items():
        if not isinstance(members, list) or not all(isinstance(m, str) and m in models for m in members):
            raise ManifestError(f"model manifest {path}: groups.{name} must list model names")
        out[name] = tuple(members)
    return out


def parse_manifest(path: Path) -> dict[str, ModelSpec]:
    data = _read_toml(path)
    if data.get("schema") != 1:
        raise ManifestError(f"model manifest {path}: unsupported schema {data.get('schema')!r} (expected 1)")
    models = data.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ManifestError(f"model manifest {path}: no [models.*] tables")
    return {name: _model(name, raw) for name, raw in models.items()}


def default_manifest_path() -> Path:
    """FACEWIRE_MANIFEST, else the manifest that ships in facewire.models."""
    env = os.environ.get("FACEWIRE_MANIFEST")
    if env:
        return Path(env).expanduser()
    return shipped("manifest.toml")


def user_models_dir() -> Path:
    """FACEWIRE_MODELS, else the platform's per-user data directory + facewire/models."""
    env = os.environ.get("FACEWIRE_MODELS")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "facewire" / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


Status = Literal["ok", "missing", "size", "hash", "unverifiable"]


@dataclass(frozen=True)
class FileCheck:
    name: str
    path: Path
    status: Status
    actual_bytes: int | None = None
    actual_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    path: Path
    session: BoundSession


def how_to_get(spec: ModelSpec, path: Path) -> str:
    lines = [f"get it with `facewire-models fetch {spec.name}`, or download it by hand and save it as {path}:"]
    lines += [f"  {url}" for url in spec.urls]
    if spec.archive:
        lines.append(f"  or take {spec.archive.member} out of {spec.archive.url}")
    lines.append(f"  licence: {spec.licence}")
    return "\n".join(lines)


class Registry:
    """The manifest's models, looked up in one models directory."""

    def __init__(self, manifest: Path | str | None = None, models_dir: Path | str | None = None) -> None:
        self.manifest_path = Path(manifest) if manifest else default_manifest_path()
        self.models_dir = Path(models_dir).expanduser() if models_dir else user_models_dir()
        self.specs = parse_manifest(self.manifest_path)
        self.groups = parse_groups(self.manifest_path, self.specs)

    def expand(self, names: list[str]) -> list[str]:
        """Model names with group names replaced by their members, in order, without repeats."""
        out: list[str] = []
        for name in names:
            for member in self.groups.get(name, (name,)):
                self.spec(member)
                if member not in out:
                    out.append(member)
        return out

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown model {name!r}; the manifest {self.manifest_path} has: {', '.join(self.specs)}"
            ) from None

    def path(self, name: str) -> Path:
        return self.models_dir / self.spec(name).file

    def installed(self, name: str) -> bool:
        return self.path(name).is_file()

    def check_file(self, name: str) -> FileCheck:
        """Size then hash (the hash cached against size and mtime in a `.verified` stamp)."""
        spec, path = self.spec(name), self.path(name)
        if not path.is_file():
            return FileCheck(name, path, "missing")
        st = path.stat()
        if spec.bytes is not None and st.st_size != spec.bytes:
            return FileCheck(name, path, "size", st.st_size)
        if spec.sha256 is None:
            return FileCheck(name, path, "unverifiable", st.st_size, file_sha256(path))
        stamp = path.with_name(path.name + ".verified")
        key = f"{st.st_size} {st.st_mtime_ns} {spec.sha256}"
        if stamp.is_file() and stamp.read_text(encoding="ascii").strip() == key:
            return FileCheck(name, path, "ok", st.st_size, spec.sha256)
        actual = file_sha256(path)
        if actual != spec.sha256:
            stamp.unlink(missing_ok=True)
            return FileCheck(name, path, "hash", st.st_size, actual)
        try:
            stamp.write_text(key + "\n", encoding="ascii")
        except OSError:
            log.debug("could not write %s; the hash will be recomputed next time", stamp)
        return FileCheck(name, path, "ok", st.st_size, actual)

    def require_file(self, name: str, allow_unverified: bool = False) -> Path:
        """The verified path, or a ModelError that names the file, the expected hash and the fix."""
        spec = self.spec(name)
        check = self.check_file(name)
        expected = f"expected sha256 {spec.sha256 or UNKNOWN_HASH}, {spec.bytes or '?'} bytes"
        fix = how_to_get(spec, check.path)
        if check.status == "missing":
            raise ModelNotInstalledError(
                f"model {name!r} is not installed: {check.path} not found ({expected}).\n{fix}"
            )
        if check.status == "size":
            raise ModelIntegrityError(
                f"model {name!r}: {check.path} is {check.actual_bytes} bytes, {expected} "
                f"(partial or wrong file; delete it).\n{fix}"
            )
        if check.status == "hash":
            raise ModelIntegrityError(
                f"model {name!r}: {check.path} has sha256 {check.actual_sha256}, {expected} "
                f"(corrupt or a different file; delete it).\n{fix}"
            )
        if check.status == "unverifiable" and not allow_unverified:
            raise ModelIntegrityError(
                f"model {name!r}: the manifest has no published hash, so {check.path} cannot be verified "
                f"(its sha256 is {check.actual_sha256}); refusing to load it."
            )
        return check.path

    def load(self, name: str, config: SessionConfig | None = None, allow_unverified: bool = False) -> LoadedModel:
        path = self.require_file(name, allow_unverified)
        spec = self.spec(name)
        cfg = config or SessionConfig(threads=default_threads())
        try:
            session = BoundSession(create_session(path, cfg, label=name), label=name)
        except (ModelError, ProviderUnavailable):
            raise
        except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
            raise ModelSignatureError(f"model {name!r}: {path} is not a loadable ONNX model: {exc}") from exc
        check_signature(spec, session, path)
        return LoadedModel(spec, path, session)


def check_signature(spec: ModelSpec, session: BoundSession, path: Path) -> None:
    problems: list[str] = []
    for kind, want, have in (("input", spec.inputs, session.inputs), ("output", spec.outputs, session.outputs)):
        have_by_name = {t.name: t for t in have}
        want_names = {t.name for t in want}
        extra = [t.name for t in have if t.name not in want_names]
        if extra:
            problems.append(f"unexpected {kind}s {extra}")
        for t in want:
            got = have_by_name.get(t.name)
            if got is None:
                problems.append(f"{kind} {t.name!r} missing")
                continue
            if len(got.shape) != t.rank:
                problems.append(f"{kind} {t.name!r} has rank {len(got.shape)}, expected {t.rank} {list(t.shape)}")
            else:
                fixed = [
                    (i, w, g) for i, (w, g) in enumerate(zip(t.shape, got.shape, strict=True))
                    if isinstance(w, int) and isinstance(g, int) and w != g
                ]
                problems += [f"{kind} {t.name!r} dim {i} is {g}, expected {w}" for i, w, g in fixed]
            if got.dtype != t.dtype:
                problems.append(f"{kind} {t.name!r} has dtype {got.dtype}, expected {t.dtype}")
    if problems:
        raise ModelSignatureError(
            f"model {spec.name!r}: {path} does not have the expected signature: " + "; ".join(problems)
            + f". Expected sha256 {spec.sha256 or UNKNOWN_HASH}; get the right file with "
            f"`facewire-models fetch {spec.name}`."
        )


def load(
    name: str,
    providers: str = "auto",
    *,
    manifest: Path | str | None = None,
    models_dir: Path | str | None = None,
    threads: int | None = None,
) -> LoadedModel:
    """Load a verified model by manifest name (see Registry.load)."""
    config = SessionConfig(providers=providers, threads=default_threads() if threads is None else threads)
    return Registry(manifest, models_dir).load(name, config)
