"""mypy over the project's folders under the names they install as (facewire.sender, facewire.shared, ...).

pyproject.toml maps the folders sender/, receiver/, shared/ and models/ onto the package `facewire`
(setuptools package-dir). An editable install reaches them through an import hook, which mypy cannot
follow (python/mypy#12313, pypa/setuptools#3518), and mypy's own file crawl would name the files
`sender.x` instead of `facewire.sender.x`. So this lists the source files itself, gives each its real
module name, and runs mypy with the settings in pyproject.toml. Usage: python .ci/typecheck.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib
from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def sources() -> list[BuildSource]:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = []
    for package, folder in package_dir.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            module = ".".join((package, *parts[:-1], *([] if parts[-1] == "__init__" else parts[-1:])))
            found.append(BuildSource(str(path.relative_to(ROOT)), module, None))
    return found


def main() -> int:
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), "-c", ""])
    try:
        result = build.build(sources(), options)
    except CompileError as exc:
        print("\n".join(exc.messages))
        return 2
    print("\n".join(result.errors))
    files = len(sources())
    print(f"{'Success: no issues found' if not result.errors else 'Errors found'} in {files} source files")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
