"""The command line: `mirfeat tag` and `mirfeat convert`."""

import json

import pytest
from conftest import AUDIO_DIR, ESSENTIA_MODELS, run_python

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
    assert main(["tag", *map(str, files), "--json", "--top", "2"]) == 1  # non-zero: one failed
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["file"] for r in results] == list(map(str, files))
    assert "error" in results[1] and "bad.wav" in results[1]["error"]
    assert len(results[0]["tags"]) == len(results[2]["tags"]) == 2
    assert "[3/3]" in captured.err  # progress


def test_tag_short_clip_says_so(tmp_path, capsys):
    import numpy as np
    import soundfile

    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(16000, np.float32), 16000)
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
