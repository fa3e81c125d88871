"""The command line: `mirfeat tag` and `mirfeat convert`."""

import json

import pytest
from conftest import AUDIO_DIR, ESSENTIA_MODELS, run_python, write_wav

import mirfeat
from mirfeat.cli import main


def test_tag_prints_top_tags(capsys):
    assert main(["tag", str(AUDIO_DIR / "techno_loop.mp3"), "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("techno_loop.mp3:")
    assert len(out) == 4
    assert out[1].split()[1] == "electronic"


def test_tag_json_keeps_going_past_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    files = [AUDIO_DIR / "vignesh.wav", bad, AUDIO_DIR / "dubstep.flac"]
    assert main(["tag", *map(str, files), "--json", "--top", "2", "--progress"]) == 1  # non-zero: one failed
    captured = capsys.readouterr()
    results = [json.loads(line) for line in captured.out.splitlines()]  # one JSON object per file
    assert [r["file"] for r in results] == list(map(str, files))
    assert "error" in results[1] and "bad.wav" in results[1]["error"]
    assert len(results[0]["tags"]) == len(results[2]["tags"]) == 2
    assert "/3 [" in captured.err  # a progress bar over the 3 files (tqdm: "n/3 [elapsed...")
    assert main(["tag", str(files[0]), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # the same shape for one file


def test_any_failure_is_recorded_and_the_batch_goes_on(tmp_path, capsys, monkeypatch):
    """An unexpected exception in one file (not an AudioError) is reported with the file's name."""
    import mirfeat.model

    real = mirfeat.model.Model.__call__

    def flaky(self, audio, **kwargs):
        if "boom" in str(audio):
            raise MemoryError("Unable to allocate 18.0 TiB")
        return real(self, audio, **kwargs)

    monkeypatch.setattr(mirfeat.model.Model, "__call__", flaky)
    boom = tmp_path / "boom.wav"
    boom.write_bytes((AUDIO_DIR / "vignesh.wav").read_bytes())
    assert main(["tag", str(boom), str(AUDIO_DIR / "vignesh.wav"), "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"file": str(boom), "error": f"{boom}: MemoryError: Unable to allocate 18.0 TiB"}
    assert "tags" in lines[1]


@pytest.mark.parametrize("top", ["0", "-1"])
def test_top_must_be_positive(top, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tag", str(AUDIO_DIR / "vignesh.wav"), "--top", top])
    assert exit_.value.code == 2
    assert "must be 1 or more" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"mirfeat {mirfeat.__version__}"


def test_a_closed_pipe_ends_quietly():
    """`mirfeat tag a b c | head -1`: no BrokenPipeError traceback."""
    import subprocess
    import sys

    files = [str(AUDIO_DIR / "vignesh.wav")] * 3
    code = f"import sys; from mirfeat.cli import main; sys.exit(main(['tag', *{files!r}]))"
    proc = subprocess.run(
        f"{sys.executable} -c {json.dumps(code)} | head -1", shell=True, capture_output=True, text=True
    )
    assert proc.stdout.strip().endswith("vignesh.wav:")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_tag_short_clip_says_so(tmp_path, capsys):
    import numpy as np

    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(16000, np.float32), 16000)
    assert main(["tag", str(short)]) == 0
    assert "shorter than one patch" in capsys.readouterr().out


def test_tag_with_unknown_model_fails_cleanly(capsys):
    assert main(["tag", str(AUDIO_DIR / "vignesh.wav"), "--model", "nope.onnx"]) == 2
    assert "nope.onnx" in capsys.readouterr().err


@pytest.mark.tensorflow
def test_convert_command(tmp_path):
    out = tmp_path / "vgg4.onnx"
    proc = run_python("-m", "mirfeat.cli", "convert", str(ESSENTIA_MODELS / "vgg" / "vgg4.pb"), "-o", str(out))
    assert "check vs TensorFlow" in proc.stdout
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_readme_first_command_needs_only_the_repository(capsys):
    """The README's main job tags the demo file that ships in the repository."""
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert "mirfeat tag examples/demo.flac" in readme
    assert main(["tag", str(ROOT / "examples" / "demo.flac"), "--top", "3"]) == 0
    assert "electronic" in capsys.readouterr().out


def test_undecodable_file_name_is_printed_escaped(tmp_path, capsys):
    import os

    name = os.fsdecode(b"caf\xe9-\xff.wav")  # Latin-1 bytes: not UTF-8
    path = tmp_path / name
    path.write_bytes((AUDIO_DIR / "vignesh.wav").read_bytes())
    assert main(["tag", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["file"].endswith("caf\\xe9-\\xff.wav") and record["tags"]


def test_a_full_disk_is_an_error_not_a_traceback():
    """stdout on a full disk (/dev/full): one `error:` line, exit 1."""
    import subprocess
    import sys

    code = f"import sys; from mirfeat.cli import main; sys.exit(main(['tag', {str(AUDIO_DIR / 'vignesh.wav')!r}]))"
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert "error: cannot write the output" in proc.stderr and "Traceback" not in proc.stderr
