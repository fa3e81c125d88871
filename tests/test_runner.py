"""`mirfeat run`: a library through a model and its heads, resumable, cross-file batched."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import AUDIO_DIR, AUDIO_FILES, ROOT, write_wav

import mirfeat
from mirfeat.cli import main
from mirfeat.errors import MirfeatError
from mirfeat.runner import FileResult, _write_table, expand_inputs, read_arrays, run


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
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["path"] for e in errors] == [str(library / "sub" / "broken.mp3")]  # retried, listed once


def test_resume_refuses_other_models_or_settings(library, tmp_path):
    out = tmp_path / "out"
    files = [library / AUDIO_FILES[0].name]
    list(run(files, ["msd-musicnn-1"], out, progress=False))
    with pytest.raises(MirfeatError, match=r"holds results of another run \(precision: fp32 then, int8 now\)"):
        list(run(files, ["msd-musicnn-1"], out, precision="int8", progress=False))
    with pytest.raises(MirfeatError, match=r"top: 5 then, 3 now; last_patch_mode: discard then, repeat now"):
        list(run(files, ["msd-musicnn-1"], out, top=3, last_patch_mode="repeat", progress=False))
    with pytest.raises(MirfeatError, match=r"arrays: npz then, None now"):
        list(run(files, ["msd-musicnn-1"], out, arrays=False, progress=False))
    assert main(["run", str(files[0]), "-m", "msd-musicnn-1", "-o", str(out), "--top", "3"]) == 2
    # Settings that change only the speed resume; a fresh start takes any settings.
    assert list(run(files, ["msd-musicnn-1"], out, batch_size=4, jobs=1, progress=False)) == []
    (done,) = run(files, ["msd-musicnn-1"], out, precision="int8", resume=False, progress=False)
    assert json.loads((out / "run.json").read_text())["parameters"]["precision"] == "int8"


def test_one_run_at_a_time_in_an_outdir(library, tmp_path):
    out = tmp_path / "out"
    first = run([library], ["msd-musicnn-1"], out, progress=False)
    next(first)  # started: it holds OUTDIR
    with pytest.raises(MirfeatError, match=r"out: another mirfeat run is writing here"):
        next(run([library], ["msd-musicnn-1"], out, progress=False))
    first.close()  # stopped: OUTDIR is free again, and the next run resumes it
    assert len(list(run([library], ["msd-musicnn-1"], out, progress=False))) == len(AUDIO_FILES) + 1


def test_a_file_shorter_than_a_patch_has_null_means(tmp_path):
    short = write_wav(tmp_path / "short.wav", np.zeros(16000, np.float32) + 0.1, 16000)  # 1 s < 3 s patch
    (result,) = run([short], ["msd-musicnn-1"], tmp_path / "out", progress=False)
    text = (tmp_path / "out" / "summary.jsonl").read_text()
    assert "NaN" not in text  # strict JSON readers refuse it
    row = json.loads(text)
    assert row["patches"] == 0 and row["models"]["msd-musicnn-1"]["top"] == []
    assert set(row["models"]["msd-musicnn-1"]["mean"].values()) == {None}


def test_a_failed_batch_fails_its_files_and_the_run_goes_on(library, tmp_path, monkeypatch):
    real = mirfeat.model.Model.run_feeds
    calls = []

    def first_batch_fails(self, feeds, graph_names):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("device out of memory")
        return real(self, feeds, graph_names)

    monkeypatch.setattr(mirfeat.model.Model, "run_feeds", first_batch_fails)
    items = list(run([library], ["msd-musicnn-1"], tmp_path / "out", batch_size=16, jobs=2, progress=False))
    failed = [i for i in items if not isinstance(i, FileResult)]
    oom = [f for f in failed if "device out of memory" in f.error]
    assert oom and len(items) == len(AUDIO_FILES) + 2  # every file accounted for
    assert any(isinstance(i, FileResult) for i in items[items.index(oom[-1]) :])  # later files done


def test_stopping_early_ends_the_worker_threads(library, tmp_path):
    before = threading.active_count()
    results = run([library], ["msd-musicnn-1"], tmp_path / "out", jobs=2, progress=False)
    next(results)
    results.close()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


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
    top = rows[1]["msd-musicnn-1:top"]
    top = json.loads(top) if fmt == "csv" else top  # a JSON list in CSV, a list column in Parquet
    journal = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert top == [label for label, _ in journal[1]["models"]["msd-musicnn-1"]["top"]] and len(top) == 2
    assert float(rows[1]["msd-musicnn-1:rock"]) >= 0


def test_table_labels_with_spaces_and_rows_of_other_columns(tmp_path):
    """Labels with spaces survive the top column; a row with a column the first lacks keeps it."""
    rows = [
        {"path": "a", "duration": 1.0, "models": {"m": {"top": [["alternative rock", 0.5]], "mean": {"x": 0.1}}}},
        {
            "path": "b",
            "duration": 2.0,
            "models": {"m": {"top": [["female vocalists", 0.4]], "mean": {"x": 0.2}}},
            "extra": 3,
        },
    ]
    _write_table(tmp_path, rows, "csv")
    import csv

    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [json.loads(r["m:top"]) for r in table] == [["alternative rock"], ["female vocalists"]]
    assert [r["extra"] for r in table] == ["", "3"]
    pq = pytest.importorskip("pyarrow.parquet", reason="the parquet extra is not installed")
    _write_table(tmp_path, rows, "parquet")
    parquet = pq.read_table(tmp_path / "summary.parquet").to_pylist()
    assert [r["m:top"] for r in parquet] == [["alternative rock"], ["female vocalists"]]
    assert [r["extra"] for r in parquet] == [None, 3]


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
