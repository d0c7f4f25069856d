"""Face renderers behind one interface (facewire.shared.types.Renderer), chosen by name with a fallback.

`make_renderer("mesh" | "inswapper", ...)`: the inswapper renderer needs its downloaded model; when
the model is missing or unusable the receiver is told once and gets the mesh renderer instead.
Renderer modules are imported lazily so a receiver without the optional models never loads them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from facewire.shared.types import Renderer

log = logging.getLogger(__name__)

RENDERERS = ("mesh", "inswapper")
INSWAPPER_MODEL = "inswapper_128"

MeshFactory = Callable[[], Renderer]


def _default_mesh() -> Renderer:
    mesh = importlib.import_module("facewire.shared.render.mesh")  # lazy: heavy, and optional for tests

    factory = getattr(mesh, "MeshRenderer", None)
    if factory is None:
        raise RuntimeError("facewire.shared.render.mesh has no MeshRenderer; pass mesh_factory to make_renderer")
    renderer: Renderer = factory()
    return renderer


def available_renderers(models_dir: Path | str | None = None, manifest: Path | str | None = None) -> list[str]:
    """Renderers this receiver can run (for `welcome`): mesh always, inswapper when its file is present.
    Presence only; make_renderer does the full size/hash/signature check and falls back if it fails."""
    from facewire.shared.models.registry import ModelError, Registry

    names = ["mesh"]
    try:
        if Registry(manifest, models_dir).installed(INSWAPPER_MODEL):
            names.append("inswapper")
    except ModelError as exc:
        log.warning("model manifest unusable, only the mesh renderer is offered: %s", exc)
    return names


def make_renderer(
    name: str,
    *,
    mesh_factory: MeshFactory | None = None,
    keep_mouth: bool = False,
    providers: str = "auto",
    models_dir: Path | str | None = None,
    manifest: Path | str | None = None,
    threads: int | None = None,
    variant: str | None = None,
) -> Renderer:
    """The renderer called `name`; `inswapper` wraps the mesh renderer and falls back to it alone."""
    if name not in RENDERERS:
        raise ValueError(f"--renderer must be one of {', '.join(RENDERERS)}, got {name!r}")
    mesh = (mesh_factory or _default_mesh)()
    if name == "mesh":
        return mesh
    from facewire.shared.models.onnx import BoundSession, ProviderUnavailable, SessionConfig, default_threads
    from facewire.shared.models.registry import ModelError, ModelNotInstalledError, Registry
    from facewire.shared.models.variants import load_model

    try:
        registry = Registry(manifest, models_dir)
        config = SessionConfig(providers=providers, threads=default_threads() if threads is None else threads)
        loaded = load_model(registry, INSWAPPER_MODEL, config, variant)
        from facewire.shared.render.inswapper import InswapperRenderer, load_emap

        session: BoundSession = loaded.session
        # The emap comes from the verified fp32 file: converters may drop or cast the unused initializer.
        emap = load_emap(registry.path(INSWAPPER_MODEL), registry.spec(INSWAPPER_MODEL).sha256)
        log.info("renderer: inswapper (%s) on %s", loaded.path.name, session.providers[0])
        return InswapperRenderer(session, emap, base=mesh, keep_mouth=keep_mouth)
    except ProviderUnavailable:
        raise  # an explicit --providers choice that cannot work is the user's to fix, not to paper over
    except ModelNotInstalledError as exc:
        log.warning("renderer inswapper unavailable, using the mesh renderer: %s", exc)
    except (ModelError, ValueError, RuntimeError) as exc:
        log.error("renderer inswapper could not start, using the mesh renderer: %s", exc)
    return mesh
