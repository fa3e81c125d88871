"""`mirfeat run --engine ray` / `mirfeat.ray_engine`: the local engine's outputs (summary, arrays,
errors, run.json, resume), on one local Ray cluster (2 CPUs) started for this module."""

import json
import shutil

import numpy as np
import pytest
from conftest import AUDIO_FILES

from mirfeat.cli import main
from mirfeat.runner import FileResult, flat_row, read_arrays, run

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

MODEL = "msd-musicnn-1"
BROKEN = "m_broken.mp3"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The shared recordings with a corrupt file in the middle (sorted order)."""
    folder = tmp_path_factory.mktemp("library")
    for path in AUDIO_FILES:
        shutil.copy(path, folder / path.name)
    (folder / BROKEN).write_bytes(b"not audio at all\n" * 50)
    paths = sorted(folder.iterdir())
    assert BROKEN in [p.name for p in paths[1:-1]]
    return folder, paths


@pytest.fixture(scope="module")
def local_out(library, tmp_path_factory):
    """The local engine's OUTDIR for the library (batches of 16 patches span files)."""
    folder, paths = library
    out = tmp_path_factory.mktemp("local")
    items = list(run(paths, [MODEL], out, batch_size=16, progress=False))
    assert sum(isinstance(i, FileResult) for i in items) == len(paths) - 1
    return out


@pytest.fixture(scope="module")
def ray_out(local_ray, library, tmp_path_factory):
    """`mirfeat run --engine ray` on the library: exit status and OUTDIR. No --batch-size: the
    family's default (16 for MusiCNN), as the local engine's run above."""
    folder, _ = library
    out = tmp_path_factory.mktemp("ray") / "out"
    status = main(["run", str(folder), "-m", MODEL, "-o", str(out), "--engine", "ray"])
    return status, out


def _journal(out) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "a file appended twice"
    return by_path


def _same_summary(got: dict, expected: dict) -> None:
    assert {k: got[k] for k in ("path", "size", "mtime_ns", "patches")} == {
        k: expected[k] for k in ("path", "size", "mtime_ns", "patches")
    }
    assert got["patches"] > 0
    assert got["duration"] == pytest.approx(expected["duration"], abs=1e-9)
    got_model, expected_model = got["models"][MODEL], expected["models"][MODEL]
    assert list(got_model["mean"]) == list(expected_model["mean"]) and len(expected_model["mean"]) == 50
    # Means are rounded to 6 decimals; batches mix other files' patches in each engine.
    np.testing.assert_allclose(list(got_model["mean"].values()), list(expected_model["mean"].values()), atol=2e-6)
    assert got_model["top"][0][0] == expected_model["top"][0][0]


def _same_arrays(got_file, expected_file) -> None:
    got, expected = read_arrays(got_file), read_arrays(expected_file)
    assert sorted(got) == sorted(expected)
    assert {"patch_times", f"{MODEL}/model/Sigmoid", f"{MODEL}/model/dense/BiasAdd"} <= set(expected)
    np.testing.assert_array_equal(got["patch_times"], expected["patch_times"])
    for name in expected:
        assert got[name].shape == expected[name].shape and got[name].dtype == expected[name].dtype
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)  # as the local engine's own test


def test_run_dataset_equals_local_engine(local_ray, library, local_out):
    """The Dataset API: same per-file summary columns as the local engine; the corrupt file is a
    row with an error, not a failed job."""
    import ray.data

    from mirfeat.ray_engine import RaySettings, run_dataset

    folder, paths = library
    ds = run_dataset(ray.data.from_items([{"path": str(p)} for p in paths]), [MODEL], RaySettings(batch_size=16))
    rows = ds.take_all()
    assert len(rows) == len(paths) and "summary" not in rows[0]
    errors = [r for r in rows if r["error"] is not None]
    assert [r["path"].rsplit("/", 1)[-1] for r in errors] == [BROKEN]
    assert BROKEN in errors[0]["error"] and errors[0]["patches"] is None
    local = {path: flat_row(row) for path, row in _journal(local_out).items()}
    done = {r["path"]: r for r in rows if r["error"] is None}
    assert sorted(done) == sorted(local)
    for path, expected in local.items():
        got = done[path]
        assert got["patches"] == expected["patches"] and got[f"{MODEL}:top"][0] == expected[f"{MODEL}:top"][0]
        means = [k for k in expected if k.startswith(f"{MODEL}:") and k != f"{MODEL}:top"]
        np.testing.assert_allclose([got[k] for k in means], [expected[k] for k in means], atol=2e-6)


def test_cli_engine_ray_fills_outdir_as_local(ray_out, local_out, capsys):
    """The same OUTDIR as the local engine: summary.jsonl, arrays (same names, same values),
    errors.jsonl with the corrupt file, run.json with the models' sha256."""
    status, out = ray_out
    assert status == 1  # one file failed; the others are written
    local, got = _journal(local_out), _journal(out)
    assert sorted(got) == sorted(local) and len(local) == len(AUDIO_FILES)
    for path, expected in local.items():
        _same_summary(got[path], expected)
    local_arrays = sorted(p.name for p in (local_out / "arrays").iterdir())
    assert sorted(p.name for p in (out / "arrays").iterdir()) == local_arrays
    assert len(local_arrays) == len(AUDIO_FILES) and all(name.endswith(".npz") for name in local_arrays)
    for name in local_arrays:
        _same_arrays(out / "arrays" / name, local_out / "arrays" / name)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    local_errors = [json.loads(line) for line in (local_out / "errors.jsonl").read_text().splitlines()]
    assert [e["path"] for e in errors] == [e["path"] for e in local_errors] and errors[0]["path"].endswith(BROKEN)
    assert BROKEN in errors[0]["error"]
    info, local_info = (json.loads((d / "run.json").read_text()) for d in (out, local_out))
    assert info["models"] == local_info["models"] and len(info["models"][0]["sha256"]) == 64
    assert info["parameters"]["engine"] == "ray" and info["parameters"]["batch_size"] == 16
    assert info["mirfeat"] == local_info["mirfeat"]


def test_ray_resumes_what_a_kill_left(ray_out, library, tmp_path):
    """A run that stopped after some files (its journal cut short, one array never written): the
    rerun does only what is missing, and appends nothing twice."""
    from mirfeat import ray_engine

    _, done_out = ray_out
    out = tmp_path / "out"
    shutil.copytree(done_out, out)
    lines = (out / "summary.jsonl").read_text().splitlines(keepends=True)
    (out / "summary.jsonl").write_text("".join(lines[:-1]) + lines[-1][:10])  # killed mid-line
    lost = json.loads(lines[-1])["path"]
    folder, _ = library
    items = list(ray_engine.run([folder], [MODEL], out, ray_engine.RaySettings(batch_size=16), progress=False))
    done = [i for i in items if isinstance(i, dict)]
    assert [d["path"] for d in done] == [lost]  # the broken file is tried again too, as locally
    assert len(items) == 2 and items[1 - items.index(done[0])].source.endswith(BROKEN)
    rows = _journal(out)
    assert sorted(rows) == sorted(_journal(done_out))
    assert list(ray_engine.run([folder], [MODEL], out, progress=False))[0].source.endswith(BROKEN)
    assert len(_journal(out)) == len(AUDIO_FILES)
    assert not list((out / "arrays").glob("*.part.*"))


def test_ray_parquet_format(local_ray, library, local_out, tmp_path):
    """--format parquet: summary.parquet from the journal, and per-patch arrays in Parquet files
    holding the local engine's .npz values."""
    import pyarrow.parquet as pq

    from mirfeat import ray_engine

    _, paths = library
    good = [p for p in paths if p.name != BROKEN][:2]
    out = tmp_path / "out"
    settings = ray_engine.RaySettings(batch_size=16)
    items = list(ray_engine.run(good, [MODEL], out, settings, format="parquet", progress=False))
    assert len(items) == 2 and all(isinstance(i, dict) for i in items)
    table = pq.read_table(out / "summary.parquet").to_pylist()
    assert sorted(r["path"] for r in table) == sorted(str(p.resolve()) for p in good)
    arrays = sorted((out / "arrays").iterdir())
    assert [a.suffix for a in arrays] == [".parquet", ".parquet"]
    for array in arrays:
        _same_arrays(array, local_out / "arrays" / array.with_suffix(".npz").name)


def test_gpu_per_actor_with_cuda(local_ray, library, monkeypatch):
    """--device cuda asks Ray for `num_gpus` per model actor (1 by default); CPU asks for none.
    Checked on the arguments given to map_batches (nothing runs: no GPU needed)."""
    import ray.data

    from mirfeat import ray_engine

    calls = []

    def record(self, fn, **kwargs):
        calls.append((fn, kwargs))
        return self

    monkeypatch.setattr(ray.data.Dataset, "map_batches", record)
    _, paths = library
    settings = ray_engine.RaySettings
    ray_engine.run_dataset(paths[:1], [MODEL], settings(device="cuda", concurrency=3))
    ray_engine.run_dataset(paths[:1], [MODEL], settings(device="cuda", num_gpus=0.5))
    ray_engine.run_dataset(paths[:1], [MODEL], settings(device="cpu", concurrency=3))
    (cuda_fn, cuda), (_, half), (_, cpu) = calls
    assert cuda_fn is ray_engine.ModelActor and cuda["fn_constructor_kwargs"]["settings"].device == "cuda"
    assert cuda["num_gpus"] == 1 and half["num_gpus"] == 0.5 and cpu["num_gpus"] == 0
    assert cuda["compute"].min_size == cuda["compute"].max_size == 3  # actors: one per GPU asked for
    assert cpu["compute"].max_size == 1  # 2 CPUs: one actor, one CPU left for decoding
