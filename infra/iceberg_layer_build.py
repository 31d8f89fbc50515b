"""DATA7: build the pyiceberg Lambda layer from the lock file, without Docker.

``make layer`` (and the CDK asset bundling in infra/iceberg_layer.py) call :func:`build`:

1. the packages: pyiceberg and everything it depends on in ``uv.lock``, minus what the Lambda
   runtime (boto3 family) and the AWS SDK for pandas layer (pyarrow, numpy, pandas) already
   provide (:data:`PROVIDED`);
2. their locked versions and hashes: ``uv export --frozen`` (the lock, never a fresh resolve),
   filtered to that set;
3. installed for the Lambda platform with ``uv pip install --target --python-platform
   <arch>-manylinux2014 --python-version <X.Y> --only-binary :all: --no-deps --require-hashes``
   (wheels only: nothing is compiled here, so no Docker is needed);
4. stripped of what is never imported on Lambda (:func:`strip`), into
   ``.build/layers/pyiceberg-py<X.Y>-<arch>-<hash>/python/``: the directory name carries a hash of
   the exported requirements and of this file, so a lock or recipe change builds a new one and an
   unchanged one is reused (no network needed once built).

Run ``python -m infra.iceberg_layer_build --python 3.13 --arch x86_64`` (prints the directory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK = REPO_ROOT / "uv.lock"
BUILD_ROOT = REPO_ROOT / ".build" / "layers"
# What the layer is for, with the extras the project locks them with (pyproject.toml). The
# Powertools library comes from the lock here instead of the managed Powertools layer: with the
# AWS SDK for pandas layer at its largest known size the managed Powertools layer does not fit
# next to pyiceberg (docs/infrastructure.md, "Size budget").
ROOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pyiceberg", ()),
    ("aws-lambda-powertools", ("tracer",)),
)

# Present on Lambda without this layer. The Python runtimes ship boto3/botocore and their
# dependencies; the AWS SDK for pandas layer ships pyarrow, numpy and pandas (L3). Shipping a
# second copy would waste budget and shadow the runtime's own (layers come first on sys.path).
PROVIDED = frozenset(
    {
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "python-dateutil",
        "six",
        "urllib3",
        "pyarrow",
        "numpy",
        "pandas",
    }
)

HOST_PLATFORM = "x86_64-manylinux_2_28"
ARCH_PLATFORMS = {"x86_64": "x86_64", "arm64": "aarch64"}
# Lowest Lambda runtime a layer can be built for. python3.12+ run on Amazon Linux 2023 (glibc
# 2.34); python3.11 runs on Amazon Linux 2 (glibc 2.26), for which uv offers no target between
# manylinux_2_17 and _2_28, and pyroaring in the lock has manylinux_2_24+ wheels only; the lock
# does not resolve pyiceberg below 3.11 at all (requires-python).
MIN_LAMBDA_PYTHON = (3, 12)


class LayerUnavailable(RuntimeError):
    """No pyiceberg layer can be built from the lock for this runtime."""


def python_platform(python_version: str, arch: str) -> str:
    """uv's ``--python-platform`` for a Lambda runtime: ``x86_64-manylinux_2_34`` for 3.13."""
    if tuple(int(p) for p in python_version.split(".")) < MIN_LAMBDA_PYTHON:
        raise LayerUnavailable(
            f"no pyiceberg layer for python{python_version}: the lock's wheels need python3.12+ "
            "(Amazon Linux 2023) on Lambda; use -c lambdaRuntime=python3.12 or later"
        )
    return f"{ARCH_PLATFORMS[arch]}-manylinux_2_34"


def normalize(name: str) -> str:
    """PEP 503 name normalisation (``Typing_Extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_packages(lock_path: Path = LOCK) -> list[str]:
    """:data:`ROOTS` and their transitive dependencies in the lock, minus :data:`PROVIDED`.

    The walk does not descend into a provided package: what only boto3 needs is the runtime's.
    """
    lock = tomllib.loads(lock_path.read_text(encoding="utf-8"))
    packages = {normalize(p["name"]): p for p in lock["package"]}
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    todo = [(name, extra) for name, extras in ROOTS for extra in ("", *extras)]
    while todo:
        name, extra = todo.pop()
        name = normalize(name)
        if (name, extra) in seen or name in PROVIDED:
            continue
        seen.add((name, extra))
        names.add(name)
        package = packages[name]
        deps = (
            package.get("optional-dependencies", {}).get(extra, [])
            if extra
            else package.get("dependencies", [])
        )
        for dep in deps:
            todo += [(dep["name"], e) for e in ("", *dep.get("extra", []))]
    return sorted(names)


def export_requirements(packages: list[str]) -> str:
    """The locked versions and hashes of ``packages`` (``uv export --frozen``), as requirements."""
    exported = subprocess.run(
        [
            *uv_command(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-header",
            "--no-annotate",
            "--format",
            "requirements-txt",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wanted = set(packages)
    blocks: list[str] = []
    for block in re.split(r"\n(?=\S)", exported.strip()):
        name = normalize(re.split(r"[=<>;\s\[]", block, maxsplit=1)[0])
        if name in wanted:
            blocks.append(block)
            wanted.discard(name)
    if wanted:
        raise RuntimeError(f"uv export does not list {sorted(wanted)}: is uv.lock in sync with pyproject?")
    return "\n".join(blocks) + "\n"


def uv_command() -> list[str]:
    uv = shutil.which("uv")
    return [uv] if uv else [sys.executable if _has_uv(sys.executable) else "python3", "-m", "uv"]


def _has_uv(python: str) -> bool:
    return subprocess.run([python, "-c", "import uv"], capture_output=True).returncode == 0


# Bump when the build steps change in a way the constants below do not show.
RECIPE_VERSION = 1


def recipe_hash(requirements: str, python_version: str, arch: str) -> str:
    """Identity of a build: what is installed, for which platform, and how it is stripped."""
    recipe = repr(
        (RECIPE_VERSION, ROOTS, sorted(PROVIDED), sorted(STRIP_DIR_NAMES), STRIP_SUFFIXES, STRIP_PACKAGES)
    )
    h = hashlib.sha256()
    for part in (requirements, python_version, arch, recipe):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class LayerBuild:
    """Where a build lives and what went into it."""

    python_version: str
    arch: str
    requirements: str
    platform: str

    @property
    def key(self) -> str:
        digest = recipe_hash(self.requirements, self.python_version, self.platform)
        return f"pyiceberg-py{self.python_version}-{self.platform}-{digest}"

    @property
    def directory(self) -> Path:
        """The layer's root: holds ``python/`` (what Lambda mounts under /opt) and a manifest."""
        return BUILD_ROOT / self.key

    @property
    def content(self) -> Path:
        return self.directory / "content"


def plan(python_version: str, arch: str, *, platform: str | None = None) -> LayerBuild:
    """The build for a Lambda runtime; ``platform`` overrides the target (the host-runnable
    copy the tests import from)."""
    if arch not in ARCH_PLATFORMS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCH_PLATFORMS)}")
    target = platform or python_platform(python_version, arch)
    return LayerBuild(python_version, arch, export_requirements(layer_packages()), target)


# Removed after install. Each entry is never imported by pyiceberg on Lambda; the smoke test in
# tests/infra/test_iceberg_layer.py imports pyiceberg from the stripped tree and commits to a
# table on the emulator with it.
STRIP_DIR_NAMES = frozenset({"__pycache__", "tests", "test", "testing"})
STRIP_SUFFIXES = (".pyc", ".pyi", ".c", ".h", ".pyx", ".pxd")
# Whole top-level packages nothing imports on this path: pyiceberg's vendored Hive Metastore
# thrift bindings (HiveCatalog only; we use GlueCatalog) and the parts of rich that pyiceberg's
# schema-compatibility table never loads (syntax highlighting, tracebacks, markdown).
STRIP_PACKAGES = ("hive_metastore", "fb303", "pygments", "markdown_it", "mdurl")


def strip(site_packages: Path) -> list[str]:
    """Delete what is never imported at run time; returns the removed paths (relative)."""
    removed: list[str] = []
    for path in sorted(site_packages.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(site_packages).as_posix()
        if path.is_dir() and path.name in STRIP_DIR_NAMES and ".dist-info" not in rel:
            shutil.rmtree(path)
            removed.append(rel + "/")
        elif path.is_file() and path.name.endswith(STRIP_SUFFIXES):
            path.unlink()
            removed.append(rel)
    for package in STRIP_PACKAGES:
        for path in [site_packages / package, *site_packages.glob(f"{package}-*.dist-info")]:
            if path.exists():
                shutil.rmtree(path)
                removed.append(path.name + "/")
    # zstandard ships two interchangeable backends (C extension and CFFI, ~12 MB each); its
    # default import policy uses the C one, so the CFFI one is dead weight.
    for cffi in site_packages.glob("zstandard/_cffi*.so"):
        cffi.unlink()
        removed.append(cffi.relative_to(site_packages).as_posix())
    removed += [p.relative_to(site_packages).as_posix() for p in site_packages.glob("*.dist-info/RECORD")]
    for record in site_packages.glob("*.dist-info/RECORD"):
        record.unlink()  # lists the deleted files; nothing reads it at run time
    return removed


def tree_size(root: Path) -> int:
    """Unzipped size in bytes: what Lambda counts against the 250 MB limit."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def build(python_version: str, arch: str, *, force: bool = False, platform: str | None = None) -> LayerBuild:
    """Build (or reuse) the layer for one runtime and architecture; returns where it is."""
    layer = plan(python_version, arch, platform=platform)
    manifest = layer.directory / "manifest.json"
    if manifest.exists() and not force:
        return layer
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=layer.key + ".", dir=BUILD_ROOT))
    try:
        requirements = work / "requirements.txt"
        requirements.write_text(layer.requirements, encoding="utf-8")
        site = work / "content" / "python"
        subprocess.run(
            [
                *uv_command(),
                "pip",
                "install",
                "--quiet",
                "--target",
                str(site),
                "--python-platform",
                layer.platform,
                "--python-version",
                python_version,
                "--only-binary",
                ":all:",
                "--no-deps",
                "--require-hashes",
                "--no-compile",
                "-r",
                str(requirements),
            ],
            cwd=REPO_ROOT,
            check=True,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
        for leftover in ("bin",):  # console scripts (pyiceberg CLI): never run on Lambda
            shutil.rmtree(site / leftover, ignore_errors=True)
        installed = tree_size(site)
        removed = strip(site)
        (work / "manifest.json").write_text(
            json.dumps(
                {
                    "python_version": python_version,
                    "architecture": arch,
                    "platform": layer.platform,
                    "packages": layer_packages(),
                    "provided_elsewhere": sorted(PROVIDED),
                    "installed_bytes": installed,
                    "unzipped_bytes": tree_size(site),
                    "stripped": removed,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        if layer.directory.exists():
            shutil.rmtree(layer.directory)
        work.rename(layer.directory)
        # Older builds for the same runtime/architecture (another lock or recipe) are stale.
        prefix = f"pyiceberg-py{python_version}-{layer.platform}-"
        for stale in BUILD_ROOT.glob(prefix + "*"):
            if stale != layer.directory and "." not in stale.name[len(prefix) :]:
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return layer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.13", help="Lambda runtime's Python version, e.g. 3.13")
    parser.add_argument("--arch", default="x86_64", choices=sorted(ARCH_PLATFORMS))
    parser.add_argument("--force", action="store_true", help="rebuild even if the cached build exists")
    parser.add_argument(
        "--host",
        action="store_true",
        help="build for this machine's Python (x86_64-manylinux_2_28): the copy the layer test imports",
    )
    args = parser.parse_args(argv)
    if args.host:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        layer = build(version, "x86_64", force=args.force, platform=HOST_PLATFORM)
    else:
        layer = build(args.python, args.arch, force=args.force)
    data = json.loads((layer.directory / "manifest.json").read_text())
    print(
        f"{layer.content}  {data['unzipped_bytes']:,} bytes unzipped "
        f"({data['installed_bytes']:,} before strip)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
