"""`mirfeat run --engine ray` / `mirfeat.ray_engine.run_dataset`: the local engine's results, on a
local Ray cluster started here."""

import shutil

import numpy as np
import pytest
from conftest import AUDIO_FILES

from mirfeat.cli import main
from mirfeat.runner import FileResult, flat_row, run

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

MODEL = "msd-musicnn-1"


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
    (folder / "m_broken.mp3").write_bytes(b"not audio at all\n" * 50)
    paths = sorted(folder.iterdir())
    assert "m_broken.mp3" in [p.name for p in paths[1:-1]]
    return folder, paths


@pytest.fixture(scope="module")
def local_rows(library, tmp_path_factory):
    folder, paths = library
    items = list(run(paths, [MODEL], tmp_path_factory.mktemp("local"), batch_size=16, arrays=False, progress=False))
    return {item.path: flat_row(item.summary) for item in items if isinstance(item, FileResult)}


def _compare(ray_rows: list[dict], local: dict[str, dict], broken_name: str) -> None:
    errors = [r for r in ray_rows if r["error"] is not None]
    assert [r["path"].rsplit("/", 1)[-1] for r in errors] == [broken_name]
    assert "m_broken.mp3" in errors[0]["error"] and errors[0]["patches"] is None
    done = {r["path"].rsplit("/", 1)[-1]: r for r in ray_rows if r["error"] is None}
    assert sorted(done) == sorted(p.rsplit("/", 1)[-1] for p in local)
    for path, expected in local.items():
        got = done[path.rsplit("/", 1)[-1]]
        assert got["patches"] == expected["patches"] and got["patches"] > 0
        assert got["size"] == expected["size"] and got["mtime_ns"] == expected["mtime_ns"]
        assert got["duration"] == pytest.approx(expected["duration"], abs=1e-9)
        means = [k for k in expected if k.startswith(f"{MODEL}:") and k != f"{MODEL}:top"]
        assert len(means) == 50
        np.testing.assert_allclose([got[k] for k in means], [expected[k] for k in means], atol=1e-6)
        assert got[f"{MODEL}:top"].split()[0] == expected[f"{MODEL}:top"].split()[0]


def test_run_dataset_equals_local_engine(local_ray, library, local_rows):
    """Same per-file clip-level means (1e-6) and patch counts as `mirfeat.run`; the corrupt file is a
    row with an error, not a failed job. Batches of 16 patches span files here, as in the local engine."""
    import ray.data

    from mirfeat.ray_engine import run_dataset

    folder, paths = library
    ds = run_dataset(ray.data.from_items([{"path": str(p)} for p in paths]), [MODEL], batch_size=16)
    rows = ds.take_all()
    assert len(rows) == len(paths)
    _compare(rows, local_rows, "m_broken.mp3")


def test_cli_engine_ray_writes_parquet(local_ray, library, local_rows, tmp_path, capsys):
    import pyarrow.parquet as pq

    folder, _ = library
    out = tmp_path / "out"
    status = main(["run", str(folder), "-m", MODEL, "-o", str(out), "--engine", "ray", "--batch-size", "16"])
    assert status == 1  # one file failed; the others are written
    assert "m_broken.mp3" in capsys.readouterr().err
    table = pq.read_table(out / "ray-parquet")
    assert table.column_names[:5] == ["path", "size", "mtime_ns", "duration", "patches"]
    assert table.column_names[-1] == "error"
    _compare(table.to_pylist(), local_rows, "m_broken.mp3")
