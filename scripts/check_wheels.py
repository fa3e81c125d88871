#!/usr/bin/env python3
"""Do mirfeat's runtime dependencies install as binary wheels on every supported platform?

Reads `[project] dependencies` from pyproject.toml and, for each target (OS, arch, oldest supported
OS release) and Python version, asks pip to resolve them as wheels only, as if installing there:

    pip install --dry-run --ignore-installed --only-binary=:all: --platform TAG... --python-version V
        --implementation cp --target DIR --report - REQUIREMENTS

It prints one row per (target, Python): OK, FAIL with pip's reason, or GAP (a failure allowed with
`--allow TARGET/PYTHON`), and exits 1 if any row failed. Needs PyPI, nothing else; installs nothing.

Markers on mirfeat's own requirements are evaluated for the target, not this machine; pip evaluates
the markers of transitive dependencies for this machine (a limit of `pip --platform`).

    python scripts/check_wheels.py [--allow 'linux-aarch64*/3.10'] [--python 3.13] [--target macos-arm64]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.version import Version
except ModuleNotFoundError:  # pip always carries packaging
    from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("3.10", "3.11", "3.12")
# onnxruntime wheels before 1.19 are built against numpy 1.x: with numpy 2, 1.17/1.18 fail to import
# and 1.16 crashes (segfault) at the first run. pip does not know: 1.16's metadata has no numpy cap.
ORT_NUMPY2 = Version("1.19")


def manylinux_tags(arch: str, glibc_minor: int) -> list[str]:
    """Wheel platform tags a Linux with glibc 2.<glibc_minor> accepts, newest first.

    pip expands `--platform` for macOS but not for manylinux_2_x, so every tag is listed."""
    tags = [f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{arch}" for m, name in legacy.items() if m <= glibc_minor]
    return tags


@dataclass(frozen=True)
class Target:
    name: str
    platforms: tuple[str, ...]  # pip --platform tags
    env: dict[str, str]  # PEP 508 marker values on the target
    pythons: tuple[str, ...] = PYTHONS
    extra: tuple[str, ...] = ()  # what the README tells users there to add to `pip install`
    note: str = field(default="", compare=False)


def _linux(arch: str) -> dict[str, str]:
    return {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": arch}


def _macos(arch: str, darwin: str) -> dict[str, str]:
    return {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "os_name": "posix",
        "platform_machine": arch,
        "platform_release": darwin,
    }


TARGETS = [
    Target("linux-x86_64", tuple(manylinux_tags("x86_64", 28)), _linux("x86_64"), note="glibc 2.28+"),
    Target("linux-aarch64", tuple(manylinux_tags("aarch64", 28)), _linux("aarch64"), note="glibc 2.28+"),
    Target("macos-arm64", ("macosx_11_0_arm64",), _macos("arm64", "20.1.0"), note="macOS 11+"),
    Target("macos-x86_64", ("macosx_11_0_x86_64",), _macos("x86_64", "20.1.0"), note="macOS 11+"),
    Target(
        "windows-x86_64",
        ("win_amd64",),
        {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
    ),
    # Platforms newer onnxruntime wheels left: onnxruntime 1.16.3 is their last, numpy must stay 1.x
    # for it, and it has no Python 3.12 wheel. (samplerate's Linux wheels need glibc 2.24.)
    Target(
        "linux-x86_64-glibc2.24",
        tuple(manylinux_tags("x86_64", 24)),
        _linux("x86_64"),
        ("3.10", "3.11"),
        ("numpy<2",),
        "glibc 2.24-2.27",
    ),
    Target(
        "linux-aarch64-glibc2.24",
        tuple(manylinux_tags("aarch64", 24)),
        _linux("aarch64"),
        ("3.10", "3.11"),
        ("numpy<2",),
        "glibc 2.24-2.27",
    ),
    Target(
        "macos-x86_64-10.15",
        ("macosx_10_15_x86_64",),
        _macos("x86_64", "19.6.0"),
        ("3.10", "3.11"),
        ("numpy<2",),
        "macOS 10.15",
    ),
]


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """`[project] dependencies`, as written."""
    with open(pyproject, "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def requirements_for(requirements: list[str], target: Target, python: str) -> list[str]:
    """The requirements that apply on target/python (markers evaluated there), markers dropped, plus target.extra."""
    env = {
        **target.env,
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    out = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or Marker(str(req.marker)).evaluate(env):
            req.marker = None
            out.append(str(req))
    return out + list(target.extra)


def matrix(targets: list[Target], pythons: tuple[str, ...] | None = None) -> list[tuple[Target, str]]:
    """(target, python) rows: each target's Pythons, or `pythons` for every target."""
    return [(t, py) for t in targets for py in (pythons or t.pythons)]


def pip_command(target: Target, python: str, requirements: list[str], dest: str) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:"]
    for tag in target.platforms:
        cmd += ["--platform", tag]
    cmd += ["--python-version", python, "--implementation", "cp", "--target", dest]
    return [*cmd, "--quiet", "--report", "-", *requirements]


def resolved_versions(report: dict) -> dict[str, str]:
    """{name: version} from a `pip install --report` JSON."""
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report.get("install", [])}


def abi_problem(versions: dict[str, str]) -> str | None:
    """Why a resolved set would not run though pip accepts it, or None."""
    ort, numpy = versions.get("onnxruntime"), versions.get("numpy")
    if ort and numpy and Version(ort) < ORT_NUMPY2 and Version(numpy).major >= 2:
        return f"onnxruntime {ort} is built for numpy 1.x, resolved numpy {numpy} (add numpy<2)"
    return None


def pip_reason(stderr: str) -> str:
    """pip's failure, in one line: the wheel that is missing, or its last ERROR line."""
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    for line in errors:
        if "satisfies the requirement" in line:
            req = line.split("satisfies the requirement", 1)[1].split("(from versions", 1)[0].strip()
            return f"no wheel for {req}"
    return errors[-1].removeprefix("ERROR: ") if errors else stderr.strip()[-200:] or "pip failed"


def resolve(target: Target, python: str, requirements: list[str]) -> tuple[bool, dict[str, str], str]:
    """(ok, {name: version}, reason) for one row; runs pip (PyPI)."""
    with tempfile.TemporaryDirectory() as dest:
        cmd = pip_command(target, python, requirements_for(requirements, target, python), dest)
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return False, {}, pip_reason(proc.stderr)
    versions = resolved_versions(json.loads(proc.stdout))
    problem = abi_problem(versions)
    return problem is None, versions, problem or ""


def parse_allow(values: list[str], targets: list[Target]) -> list[tuple[str, str]]:
    """`TARGET/PYTHON` strings (TARGET may be a glob: `linux-aarch64*/3.10`) -> [(pattern, python)]."""
    allowed = []
    for value in values:
        pattern, _, python = value.partition("/")
        if not python or not any(fnmatch.fnmatchcase(t.name, pattern) for t in targets):
            raise ValueError(f"--allow {value!r}: expected TARGET/PYTHON, TARGET in {[t.name for t in targets]}")
        allowed.append((pattern, python))
    return allowed


def is_allowed(allowed: list[tuple[str, str]], target: Target, python: str) -> bool:
    return any(fnmatch.fnmatchcase(target.name, pattern) and python == py for pattern, py in allowed)


def main(argv: list[str] | None = None, resolver=resolve) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--allow", action="append", default=[], metavar="TARGET/PYTHON", help="a known gap")
    parser.add_argument("--target", action="append", default=[], help="only these targets (default: all)")
    parser.add_argument("--python", action="append", default=[], help="these Pythons for every target")
    parser.add_argument("--show", action="append", default=[], help="another package's resolved version")
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args(argv)
    targets = [t for t in TARGETS if not args.target or t.name in args.target]
    try:
        allowed = parse_allow(args.allow, TARGETS)
    except ValueError as e:
        parser.error(str(e))
    requirements = runtime_requirements(args.pyproject)
    rows = matrix(targets, tuple(args.python) or None)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda row: resolver(row[0], row[1], requirements), rows))

    print(f"requirements: {', '.join(requirements)}")
    shown = ["onnxruntime", "numpy", *(name.lower() for name in args.show)]
    print(f"{'target':<24} {'python':<7} {'result':<6} " + "".join(f"{n:<12} " for n in shown) + "reason")
    failed = 0
    for (target, python), (ok, versions, reason) in zip(rows, results, strict=True):
        gap = is_allowed(allowed, target, python)
        result = "OK" if ok else "GAP" if gap else "FAIL"
        failed += result == "FAIL"
        if ok and gap:
            reason = "allowed gap resolves now: drop its --allow"
        extra = f" [+{' '.join(target.extra)}]" if target.extra else ""
        columns = "".join(f"{versions.get(n, '-'):<12} " for n in shown)
        print(f"{target.name:<24} {python:<7} {result:<6} {columns}{reason}{extra}".rstrip())
    print(f"check_wheels: {len(rows) - failed}/{len(rows)} resolve" + (f", {failed} FAIL" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
