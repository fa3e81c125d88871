"""Plots: files written at the right size, with the class labels on them; the tutorial example."""

import re
import struct

import numpy as np
import pytest
from conftest import AUDIO_DIR, ROOT, run_python

import mirfeat
from mirfeat.cli import main
from mirfeat.plot import plot_embeddings, plot_result

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def tick_labels(fig):
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_activation_plot_has_every_label(tmp_path):
    model = mirfeat.load_model()
    result = model(AUDIO_DIR / "techno_loop.mp3")
    fig = plot_result(result, tmp_path / "tags.png", size=(10, 6), dpi=80)
    assert png_size(tmp_path / "tags.png") == (800, 480)
    assert tick_labels(fig) == model.labels


def test_top_k_plot_keeps_the_strongest_labels(tmp_path):
    result = mirfeat.load_model()(AUDIO_DIR / "techno_loop.mp3")
    fig = plot_result(result, tmp_path / "top.png", top=5)
    assert set(tick_labels(fig)) == {label for label, _ in result.top_k(5)}


def test_embedding_plot(tmp_path):
    fig = plot_embeddings(
        np.random.default_rng(0).standard_normal((12, 200)),
        np.arange(12) * 1.488,
        tmp_path / "emb.png",
        size=(6, 3),
        dpi=50,
    )
    assert png_size(tmp_path / "emb.png") == (300, 150)
    assert fig.axes[0].get_ylabel() == "dimension"


def test_plot_command(tmp_path, capsys):
    out = tmp_path / "plot.png"
    assert main(["plot", str(AUDIO_DIR / "dubstep.flac"), "-o", str(out), "--top", "8"]) == 0
    assert png_size(out) == (1200, 800)
    assert "wrote" in capsys.readouterr().out


def test_tutorial_example(vggish_dir, tmp_path):
    proc = run_python(
        str(ROOT / "examples" / "tutorial.py"),
        str(AUDIO_DIR / "techno_loop.mp3"),
        "--models",
        str(vggish_dir),
        "--out",
        str(tmp_path),
    )
    lines = re.findall(r"^(\w+): (\d+\.\d)%$", proc.stdout, re.MULTILINE)
    assert [label for label, _ in lines] == ["class_a", "class_b", "task1_0", "task1_1"]
    assert abs(sum(float(p) for _, p in lines[:2]) - 100) < 0.2  # softmax classes add up
    assert png_size(tmp_path / "autotagging.png") == (1200, 800)
    for name in ("embeddings-musicnn.png", "embeddings-vggish.png"):
        assert png_size(tmp_path / name) == (1200, 500)
