"""`mirfeat run`: a library through a model and its heads, resumable, cross-file batched."""

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import AUDIO_DIR, AUDIO_FILES, ROOT

import mirfeat
from mirfeat.cli import main
from mirfeat.errors import MirfeatError
from mirfeat.runner import FileResult, expand_inputs, read_arrays, run


@pytest.fixture
def library(tmp_path):
    """The shared recordings and the demo file, with a corrupt file in the middle."""
    folder = tmp_path / "library"
    (folder / "sub").mkdir(parents=True)
    for path in AUDIO_FILES:
        shutil.copy(path, folder / path.name)
    shutil.copy(ROOT / "examples" / "demo.flac", folder / "sub" / "demo.flac")
    (folder / "sub" / "broken.mp3").write_bytes(b"not audio at all\n" * 50)
    return folder


def test_outputs_equal_per_file_runs(library, tmp_path):
    """Patches of several files share batches (batch 16 here spans files): every file's outputs
    equal the model run on that file alone, and a bad file is recorded without stopping the rest."""
    out = tmp_path / "out"
    items = list(run([library], ["msd-musicnn-1"], out, batch_size=16, jobs=2))
    done = [i for i in items if isinstance(i, FileResult)]
    failed = [i for i in items if not isinstance(i, FileResult)]
    assert len(done) == len(AUDIO_FILES) + 1
    assert [f.source for f in failed] == [str(library / "sub" / "broken.mp3")]
    position = items.index(failed[0])
    assert 0 < position < len(items) - 1  # a corrupt file in the middle: the files after it are done too
    model = mirfeat.load_model(batch_size=16)
    for item in done:
        alone = model(item.path)
        np.testing.assert_allclose(item.outputs["msd-musicnn-1/model/Sigmoid"], alone.activations, atol=1e-6)
        np.testing.assert_allclose(item.outputs["msd-musicnn-1/model/dense/BiasAdd"], alone.embeddings, atol=1e-5)
        np.testing.assert_allclose(item.patch_times, alone.patch_times)
        assert item.summary["models"]["msd-musicnn-1"]["top"][0][0] == alone.top_k(1)[0][0]
    rows = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(
        str((library / p).resolve()) for p in [*[f.name for f in AUDIO_FILES], "sub/demo.flac"]
    )
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and "broken.mp3" in errors[0]["error"]
    arrays = sorted((out / "arrays").glob("*.npz"))
    assert len(arrays) == len(done)
    with np.load(arrays[0]) as data:
        assert {"patch_times", "msd-musicnn-1/model/Sigmoid", "msd-musicnn-1/model/dense/BiasAdd"} <= set(data.files)
    info = json.loads((out / "run.json").read_text())
    assert info["models"][0]["name"] == "msd-musicnn-1" and len(info["models"][0]["sha256"]) == 64


def test_rerun_skips_what_is_done(library, tmp_path):
    out = tmp_path / "out"
    first = list(run([library], ["msd-musicnn-1"], out))
    again = list(run([library], ["msd-musicnn-1"], out))
    assert len(first) == len(AUDIO_FILES) + 2
    assert [type(i).__name__ for i in again] == ["FileFailure"]  # only the broken file is tried again
    demo = library / "sub" / "demo.flac"
    demo.touch()  # a changed file is done again
    third = [i for i in run([library], ["msd-musicnn-1"], out) if isinstance(i, FileResult)]
    assert [i.path for i in third] == [str(demo)]
    rows = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert len(rows) == len(AUDIO_FILES) + 2  # the touched file twice: before and after its change
    assert len({(r["path"], r["mtime_ns"]) for r in rows}) == len(rows)


def test_killed_run_resumes_and_loses_nothing(tmp_path):
    """Kill a run mid-way (SIGKILL), run again: every file appears exactly once, none half-written."""
    library = tmp_path / "many"
    library.mkdir()
    for i in range(24):
        shutil.copy(AUDIO_DIR / "vignesh.wav", library / f"clip{i:02d}.wav")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mirfeat.cli", "run", str(library), "-m", "msd-musicnn-1", "-o", str(out)]
    proc = subprocess.Popen([*command, "--jobs", "1", "--batch-size", "1"], cwd=ROOT)
    journal = out / "summary.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not journal.is_file() or journal.read_text().count("\n") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = journal.read_text().count("\n")
    assert 3 <= killed_at < 24, "the run should have been killed mid-way"
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(p.resolve()) for p in library.glob("*.wav"))
    assert len(list((out / "arrays").glob("clip*[0-9a-f].npz"))) == 24
    assert not list((out / "arrays").glob("*.part.npz"))  # a file cut short by the kill was written again


def test_manifests_globs_and_directories(tmp_path):
    a, b = AUDIO_FILES[0], AUDIO_FILES[1]
    (tmp_path / "list.txt").write_text(f"# two files\n{a}\n{b}\n")
    (tmp_path / "list.csv").write_text(f"path,label\n{b},x\n")
    assert expand_inputs([f"@{tmp_path / 'list.txt'}"]) == [a, b]
    assert expand_inputs([f"@{tmp_path / 'list.csv'}", str(a)]) == [b, a]
    assert expand_inputs([str(AUDIO_DIR / "*.wav")]) == sorted(p for p in AUDIO_FILES if p.suffix == ".wav")
    assert expand_inputs([AUDIO_DIR, a]) == AUDIO_FILES  # duplicates dropped


def test_a_directory_or_pattern_with_no_audio_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(MirfeatError, match=r"empty: no audio files in this directory"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(MirfeatError, match=r"typo/\*\.mp3: no files match this pattern"):
        expand_inputs([str(tmp_path / "typo" / "*.mp3")])
    assert main(["run", str(tmp_path / "typo" / "*.mp3"), "-m", "msd-musicnn-1", "-o", str(tmp_path / "out")]) == 2
    assert "no files match this pattern" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_summary_tables(tmp_path, fmt, capsys):
    if fmt == "parquet":
        pytest.importorskip("pyarrow.parquet", reason="the parquet extra is not installed")
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(AUDIO_DIR / "vignesh.wav"),
            str(ROOT / "examples" / "demo.flac"),
            "-m",
            "msd-musicnn-1",
            "-o",
            str(out),
            "--format",
            fmt,
            "--no-arrays",
            "--top",
            "2",
        ]
    )
    assert code == 0
    assert "2 files done, 0 failed" in capsys.readouterr().out
    assert not list((out / "arrays").glob("*.npz"))
    if fmt == "csv":
        import csv

        rows = list(csv.DictReader((out / "summary.csv").open()))
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out / "summary.parquet").to_pylist()
    assert len(rows) == 2
    assert len(rows[1]["msd-musicnn-1:top"].split()) == 2 and float(rows[1]["msd-musicnn-1:rock"]) >= 0


def test_parquet_arrays_hold_the_npz_values(tmp_path):
    """--format parquet writes each file's arrays as Parquet (a row per patch), with the values and
    shapes of the .npz that the other formats write; --format npz writes no summary table."""
    pytest.importorskip("pyarrow.parquet", reason="the parquet extra is not installed")
    audio = [AUDIO_DIR / "dubstep.flac"]
    list(run(audio, ["msd-musicnn-1"], tmp_path / "npz", format="npz", progress=False))
    list(run(audio, ["msd-musicnn-1"], tmp_path / "pq", format="parquet", progress=False))
    assert not list((tmp_path / "npz").glob("summary.csv")) + list((tmp_path / "npz").glob("summary.parquet"))
    (npz,) = (tmp_path / "npz" / "arrays").iterdir()
    (parquet,) = (tmp_path / "pq" / "arrays").iterdir()
    assert parquet.name == npz.with_suffix(".parquet").name and (tmp_path / "pq" / "summary.parquet").is_file()
    expected, got = read_arrays(npz), read_arrays(parquet)
    assert sorted(got) == sorted(expected) and len(expected["patch_times"]) > 1
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        np.testing.assert_array_equal(got[name], value)  # one process, same batches: the same numbers
