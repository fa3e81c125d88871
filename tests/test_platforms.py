"""scripts/check_wheels.py without the network: pyproject parsing, the platform matrix, markers, pip's
command line and failures, the onnxruntime/numpy rule, and the table and exit status (pip faked)."""

import importlib.util
import re
import sys

import pytest
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("check_wheels", ROOT / "scripts" / "check_wheels.py")
cw = importlib.util.module_from_spec(_spec)
sys.modules["check_wheels"] = cw  # dataclasses look their module up
_spec.loader.exec_module(cw)

TARGETS = {t.name: t for t in cw.TARGETS}


def test_runtime_requirements_are_pyprojects():
    requirements = cw.runtime_requirements()
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}
    assert {"numpy", "onnxruntime"} <= names


def test_runtime_requirements_of_another_pyproject(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\ndependencies = ["numpy>=1.24", "foo; sys_platform == \'linux\'"]\n')
    assert cw.runtime_requirements(path) == ["numpy>=1.24", "foo; sys_platform == 'linux'"]


def test_the_matrix_covers_the_supported_platforms_and_pythons():
    tags = {tag for t in cw.TARGETS for tag in t.platforms}
    assert {"win_amd64", "macosx_11_0_arm64", "macosx_11_0_x86_64"} <= tags
    assert {"manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "macosx_10_15_x86_64"} <= tags
    rows = cw.matrix(cw.TARGETS)
    for name in ("linux-x86_64", "linux-aarch64", "macos-arm64", "macos-x86_64", "windows-x86_64"):
        assert [py for t, py in rows if t.name == name] == ["3.10", "3.11", "3.12"]
    # onnxruntime 1.16.3, the last for these, has no Python 3.12 wheel; numpy 2 would crash it
    for t in cw.TARGETS:
        if t.name.endswith(("glibc2.24", "10.15")):
            assert t.pythons == ("3.10", "3.11") and t.extra == ("numpy<2",)
    assert len(cw.matrix(cw.TARGETS, ("3.13",))) == len(cw.TARGETS)


def test_manylinux_tags():
    tags = cw.manylinux_tags("aarch64", 28)
    assert tags[0] == "manylinux_2_28_aarch64" and "manylinux_2_17_aarch64" in tags
    assert {"manylinux2014_aarch64", "manylinux2010_aarch64", "manylinux1_aarch64"} <= set(tags)
    assert "manylinux_2_28_x86_64" not in cw.manylinux_tags("x86_64", 27)
    assert "manylinux_2_24_x86_64" in cw.manylinux_tags("x86_64", 24)


def test_markers_are_evaluated_for_the_target():
    requirements = ["numpy>=1.24", 'samplerate>=0.2.1; platform_machine != "aarch64" or python_version >= "3.11"']
    aarch64 = TARGETS["linux-aarch64"]
    assert cw.requirements_for(requirements, aarch64, "3.10") == ["numpy>=1.24"]
    assert cw.requirements_for(requirements, aarch64, "3.11") == ["numpy>=1.24", "samplerate>=0.2.1"]
    assert cw.requirements_for(["a; sys_platform == 'win32'"], TARGETS["windows-x86_64"], "3.12") == ["a"]
    assert cw.requirements_for(["a; sys_platform == 'win32'"], TARGETS["macos-arm64"], "3.12") == []
    assert cw.requirements_for(["numpy>=1.24"], TARGETS["macos-x86_64-10.15"], "3.11") == ["numpy>=1.24", "numpy<2"]


def test_pip_command():
    cmd = cw.pip_command(TARGETS["linux-x86_64"], "3.11", ["numpy>=1.24"], "/tmp/dest")
    assert cmd[1:5] == ["-m", "pip", "install", "--dry-run"]
    assert "--only-binary=:all:" in cmd and "--ignore-installed" in cmd
    assert cmd.count("--platform") == len(TARGETS["linux-x86_64"].platforms)
    assert cmd[cmd.index("--python-version") + 1] == "3.11" and cmd[cmd.index("--target") + 1] == "/tmp/dest"
    assert cmd[-3:] == ["--report", "-", "numpy>=1.24"]


def test_onnxruntime_before_1_19_needs_numpy_1():
    assert "numpy<2" in cw.abi_problem({"onnxruntime": "1.16.3", "numpy": "2.2.6"})
    assert cw.abi_problem({"onnxruntime": "1.16.3", "numpy": "1.26.4"}) is None
    assert cw.abi_problem({"onnxruntime": "1.19.2", "numpy": "2.4.6"}) is None
    assert cw.abi_problem({"numpy": "2.4.6"}) is None


def test_pip_reason():
    stderr = (
        "WARNING: Location 'file:///x' is ignored\n"
        "ERROR: Could not find a version that satisfies the requirement samplerate>=0.2.1 (from versions: 0.1.0)\n"
        "ERROR: No matching distribution found for samplerate>=0.2.1\n"
    )
    assert cw.pip_reason(stderr) == "no wheel for samplerate>=0.2.1"
    assert cw.pip_reason("ERROR: ResolutionImpossible: x\n") == "ResolutionImpossible: x"
    assert cw.pip_reason("") == "pip failed"


def test_allow_list():
    allowed = cw.parse_allow(["linux-aarch64*/3.10", "windows-x86_64/3.12"], cw.TARGETS)
    assert cw.is_allowed(allowed, TARGETS["linux-aarch64"], "3.10")
    assert cw.is_allowed(allowed, TARGETS["linux-aarch64-glibc2.24"], "3.10")
    assert cw.is_allowed(allowed, TARGETS["windows-x86_64"], "3.12")
    assert not cw.is_allowed(allowed, TARGETS["linux-aarch64"], "3.11")
    assert not cw.is_allowed(allowed, TARGETS["linux-x86_64"], "3.10")
    for bad in ("linux-arm/3.10", "linux-aarch64"):
        with pytest.raises(ValueError):
            cw.parse_allow([bad], cw.TARGETS)


def test_table_and_exit_status(capsys):
    def fake(target, python, requirements):
        if target.name == "linux-aarch64" and python == "3.10":
            return False, {}, "no wheel for samplerate>=0.2.1"
        return True, {"onnxruntime": "1.32.0", "numpy": "2.4.6"}, ""

    argv = ["--target", "linux-aarch64", "--target", "windows-x86_64"]
    assert cw.main(argv, resolver=fake) == 1
    out = capsys.readouterr().out
    assert re.search(r"linux-aarch64 +3\.10 +FAIL .*no wheel for samplerate", out)
    assert re.search(r"windows-x86_64 +3\.12 +OK +1\.32\.0 +2\.4\.6", out)
    assert "5/6 resolve, 1 FAIL" in out
    assert cw.main([*argv, "--allow", "linux-aarch64/3.10"], resolver=fake) == 0
    assert re.search(r"linux-aarch64 +3\.10 +GAP", capsys.readouterr().out)
    assert cw.main(["--target", "macos-arm64", "--allow", "macos-arm64/3.11", "--show", "av"], resolver=fake) == 0
    out = capsys.readouterr().out
    assert "allowed gap resolves now" in out
    assert re.search(r"macos-arm64 +3\.10 +OK +1\.32\.0 +2\.4\.6 +-$", out, re.M)  # --show av: not resolved


def test_readme_states_the_floors():
    floors = dict(re.findall(r'"(numpy|onnxruntime)>=([\d.]+)"', (ROOT / "pyproject.toml").read_text()))
    readme = (ROOT / "README.md").read_text()
    for name, floor in floors.items():
        assert f"{name} {floor}" in readme, f"README's Platforms section should state the floor {name} {floor}"
