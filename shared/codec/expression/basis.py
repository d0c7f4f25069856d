"""The expression basis (K directions over the canonical mesh, in stages) and the quantiser steps.

The basis is data that ships with facewire (`facewire.models`, file `expression_basis.npz`, built
by bench/build_basis.py from clips whose provenance it records). Sender and receiver must hold the
same one: its sha256 is pinned here, a file with another is refused, and the first four bytes of
that sha256 (`basis_id`) travel in every setup so a peer with another basis fails clearly.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facewire.models import shipped
from facewire.shared.face.topology import MESH_SIZE

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

BASIS_FILE = "expression_basis.npz"
# The shipped basis (models/expression_basis.json says how it was built). A rebuild that changes it
# changes this line, the golden digest and every peer's basis id.
BASIS_SHA256 = "d137e8afb4ea5011cfc023a69b98e37be3d5d4343413cd410534348ca4fa0977"
BASIS_FORMAT = 1
POSE_VALUES = 6  # yaw, pitch, roll (degrees), tx, ty (pixels), ln scale
MAX_COEFFICIENTS = 256
MAX_STAGES = 8
STEP_FIXED = 1e-5  # every step travels in a setup as a u32 count of 1e-5 of its unit
MAX_STEP = 40000.0


class BasisError(RuntimeError):
    """The basis file is missing, corrupt or another one than this facewire was built with."""


@dataclass(frozen=True)
class Steps:
    """Quantiser steps. angle_deg: yaw, pitch, roll; translation_px: tx, ty; log_scale: ln(scale);
    coeff: one step per basis stage, canonical units (1 unit = the eye-corner distance); mesh,
    mesh_z: the neutral mesh in setups (x and y, z; z matters only under rotation)."""

    angle_deg: float = 0.2
    translation_px: float = 0.25
    log_scale: float = 0.003
    coeff: tuple[float, ...] = (0.04, 0.02, 0.02, 0.01)
    mesh: float = 1.0 / 256.0
    mesh_z: float = 1.0 / 128.0

    def __post_init__(self) -> None:
        values = (self.angle_deg, self.translation_px, self.log_scale, self.mesh, self.mesh_z, *self.coeff)
        if not self.coeff or not all(math.isfinite(v) and STEP_FIXED <= v <= MAX_STEP for v in values):
            raise ValueError(f"quantiser steps must lie in [{STEP_FIXED}, {MAX_STEP}]: {self}")

    def pose_steps(self) -> F64:
        return np.array([self.angle_deg] * 3 + [self.translation_px] * 2 + [self.log_scale])

    def coeff_steps(self, stage_sizes: tuple[int, ...]) -> F64:
        if len(self.coeff) != len(stage_sizes):
            raise ValueError(f"{len(self.coeff)} coefficient steps for a basis of {len(stage_sizes)} stages")
        return np.concatenate([np.full(n, s) for n, s in zip(stage_sizes, self.coeff, strict=True)])

    def mesh_steps(self) -> F64:
        return np.array([self.mesh, self.mesh, self.mesh_z])

    def fixed(self) -> Steps:
        """These steps as they survive a setup (1e-5 fixed point)."""
        def fixed(value: float) -> float:
            return to_fixed(value) * STEP_FIXED

        return Steps(fixed(self.angle_deg), fixed(self.translation_px), fixed(self.log_scale),
                     tuple(fixed(c) for c in self.coeff), fixed(self.mesh), fixed(self.mesh_z))

    def to_json(self) -> dict[str, Any]:
        return {"angle_deg": self.angle_deg, "translation_px": self.translation_px, "log_scale": self.log_scale,
                "coeff": list(self.coeff), "mesh": self.mesh, "mesh_z": self.mesh_z}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Steps:
        return cls(float(d["angle_deg"]), float(d["translation_px"]), float(d["log_scale"]),
                   tuple(float(c) for c in d["coeff"]), float(d["mesh"]), float(d["mesh_z"]))


def to_fixed(value: float) -> int:
    return int(round(value / STEP_FIXED))


def tree_order(parent: npt.ArrayLike) -> I64:
    """Points ordered so every parent comes before its children; raises unless `parent` is one tree
    over all 478 points (a single root marked -1)."""
    par = np.asarray(parent, dtype=np.int64)
    if par.shape != (MESH_SIZE,) or np.sum(par == -1) != 1 or np.any((par < -1) | (par >= MESH_SIZE)):
        raise ValueError("mesh_parent must be (478,) parents with one root (-1)")
    depth = np.full(MESH_SIZE, -1, np.int64)
    depth[par == -1] = 0
    for _ in range(MESH_SIZE):
        todo = (depth < 0) & (depth[np.maximum(par, 0)] >= 0)
        if not todo.any():
            break
        depth[todo] = depth[par[todo]] + 1
    if np.any(depth < 0):
        raise ValueError("mesh_parent is not a tree")
    return np.argsort(depth, kind="stable")


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class ExpressionBasis:
    """K expression directions over the (478, 3) canonical mesh, in stages.

    rows (K, 1434): stage after stage; each stage's rows are orthonormal and zero outside its points.
    mean_neutral: the training clips' mean neutral face (what a setup's mesh is coded against).
    coeff_std, coeff_delta (K,): spread and mean |frame-to-frame change| of each coefficient;
    pose_std, pose_delta (6,): the same for the pose values. They set the entropy models' starting
    points. mesh_parent: a spanning tree of the mesh (-1 at the root), along which setups code the
    neutral (a face's shape is smooth along it).
    """

    rows: F32
    stage_sizes: tuple[int, ...]
    stage_names: tuple[str, ...]
    mean_neutral: F32
    coeff_std: F32
    coeff_delta: F32
    pose_std: F32
    pose_delta: F32
    default_steps: Steps
    mesh_parent: I64
    sha256: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    mesh_order: I64 = field(init=False, repr=False)
    rows64: F64 = field(init=False, repr=False)  # the rows in float64, which every computation uses
    stage_rows64: tuple[F64, ...] = field(init=False, repr=False)  # each stage's rows (views of rows64)

    def __post_init__(self) -> None:
        k = self.rows.shape[0]
        if self.rows.shape != (k, MESH_SIZE * 3) or not 1 <= k <= MAX_COEFFICIENTS:
            raise ValueError(f"basis rows must be (K, {MESH_SIZE * 3}) with 1 <= K <= {MAX_COEFFICIENTS}")
        if (sum(self.stage_sizes) != k or len(self.stage_sizes) != len(self.stage_names)
                or not 1 <= len(self.stage_sizes) <= MAX_STAGES or min(self.stage_sizes) < 1):
            raise ValueError("basis stage sizes do not add up to its rows")
        if self.mean_neutral.shape != (MESH_SIZE, 3):
            raise ValueError("basis mean neutral must be (478, 3)")
        for name, count in (("coeff_std", k), ("coeff_delta", k), ("pose_std", POSE_VALUES), ("pose_delta", POSE_VALUES)):
            if getattr(self, name).shape != (count,):
                raise ValueError(f"basis {name} must have {count} entries")
        for name in ("rows", "mean_neutral", "coeff_std", "coeff_delta", "pose_std", "pose_delta"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"basis {name} is not finite")
        self.default_steps.coeff_steps(self.stage_sizes)
        object.__setattr__(self, "mesh_order", tree_order(self.mesh_parent))
        rows64 = self.rows.astype(np.float64)
        object.__setattr__(self, "rows64", rows64)
        object.__setattr__(self, "stage_rows64", tuple(rows64[sl] for sl in self.stage_slices))

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    @property
    def stage_slices(self) -> list[slice]:
        edges = np.cumsum((0, *self.stage_sizes))
        return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    @property
    def basis_id(self) -> int:
        """The first 4 bytes of the file's sha256, carried in setups."""
        return int(self.sha256[:8], 16) if self.sha256 else 0

    def span_part(self, delta: npt.ArrayLike) -> F64:
        """The part of a (478, 3) canonical displacement the basis expresses, taken stage after stage
        as the quantiser does (later stages see what earlier ones left)."""
        d = np.asarray(delta, dtype=np.float64).reshape(-1)
        r = d.copy()
        for rows in self.stage_rows64:
            r = r - (rows @ r) @ rows
        return (d - r).reshape(MESH_SIZE, 3)

    def save(self, path: Path) -> str:
        """Write the .npz (float32, uncompressed: the bytes, hence the sha256, are reproducible); its sha256."""
        arrays: dict[str, Any] = {
            "format": np.int32(BASIS_FORMAT),
            "rows": self.rows.astype(np.float32),
            "stage_sizes": np.array(self.stage_sizes, np.int32),
            "stage_names": np.array(json.dumps(list(self.stage_names))),
            "mean_neutral": self.mean_neutral.astype(np.float32),
            "coeff_std": self.coeff_std.astype(np.float32),
            "coeff_delta": self.coeff_delta.astype(np.float32),
            "pose_std": self.pose_std.astype(np.float32),
            "pose_delta": self.pose_delta.astype(np.float32),
            "default_steps": np.array(json.dumps(self.default_steps.to_json())),
            "mesh_parent": self.mesh_parent.astype(np.int16),
            "provenance": np.array(json.dumps(self.provenance, sort_keys=True)),
        }
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    @classmethod
    def load(cls, path: Path, expected_sha256: str | None = None) -> ExpressionBasis:
        """The basis in `path`; BasisError naming the file when it is missing, has another sha256 than
        `expected_sha256` or does not parse."""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise BasisError(f"expression basis {path} cannot be read ({exc.strerror}): reinstall facewire, "
                             f"or rebuild it with bench/build_basis.py") from None
        digest = hashlib.sha256(raw).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise BasisError(f"expression basis {path} has sha256 {digest}, expected {expected_sha256}: "
                             "a corrupt or different file (peers must share the basis)")
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                if int(z["format"]) != BASIS_FORMAT:
                    raise ValueError(f"format {int(z['format'])}, this facewire reads {BASIS_FORMAT}")
                return cls(
                    rows=z["rows"].astype(np.float32),
                    stage_sizes=tuple(int(v) for v in z["stage_sizes"]),
                    stage_names=tuple(json.loads(str(z["stage_names"]))),
                    mean_neutral=z["mean_neutral"].astype(np.float32),
                    coeff_std=z["coeff_std"].astype(np.float32),
                    coeff_delta=z["coeff_delta"].astype(np.float32),
                    pose_std=z["pose_std"].astype(np.float32),
                    pose_delta=z["pose_delta"].astype(np.float32),
                    default_steps=Steps.from_json(json.loads(str(z["default_steps"]))),
                    mesh_parent=z["mesh_parent"].astype(np.int64),
                    sha256=digest,
                    provenance=json.loads(str(z["provenance"])),
                )
        except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise BasisError(f"expression basis {path} does not load: {exc}") from None


@functools.cache
def shipped_basis() -> ExpressionBasis:
    """The basis that ships with facewire, checked against its pinned sha256; loaded once per process."""
    return ExpressionBasis.load(shipped(BASIS_FILE), BASIS_SHA256)
