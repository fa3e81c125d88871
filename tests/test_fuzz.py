"""Fuzzing the decode + frontend path: mutated real files and forged headers never crash the
process nor raise anything but a clear per-file AudioError (bounded in examples and time).

Seeds are small real files made from the shared recordings (wav, flac, mp3, ogg, m4a cut to
0.3 s so each example stays fast) and the demo file; hypothesis flips bytes, truncates, splices
and repeats chunks of them. Examples are derandomised, so CI runs the same cases every time.
"""

import io
import wave

import numpy as np
import pytest
from conftest import ROOT

import mirfeat
from mirfeat.families import MUSICNN_FAMILY, VGGISH_FAMILY

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 0.99997) * 32768).astype("<i2").tobytes())
    return buffer.getvalue()


def _encoded(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def seeds() -> dict[str, bytes]:
    """Small valid files of every container mirfeat decodes."""
    demo = mirfeat.load_audio(ROOT / "examples" / "demo.flac", 22050)[:6615]
    out = {
        "wav": _wav_bytes(demo, 22050),
        "wav_stereo": _wav_bytes(np.repeat(demo, 2), 22050, channels=2),
        "flac_demo": (ROOT / "examples" / "demo.flac").read_bytes()[:60000],
    }
    for name, container, codec in (("mp3", "mp3", "libmp3lame"), ("ogg", "ogg", "libvorbis"), ("m4a", "mp4", "aac")):
        try:
            out[name] = _encoded(demo, 22050, container, codec)
        except Exception:  # an encoder this PyAV build lacks: fuzz the others
            continue
    return out


SEEDS = seeds()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice", "repeat", "zero_header"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 4096))]
        else:
            data[: min(len(data), 64)] = bytes(min(len(data), 64))
    return bytes(data)


@st.composite
def forged_wav(draw) -> bytes:
    """A RIFF/WAVE header with arbitrary field values over a little real data."""
    rate = draw(st.sampled_from([0, 1, 50, 8000, 44100, 4_096_001, 2**31 - 1]))
    channels = draw(st.sampled_from([0, 1, 2, 7, 65535]))
    bits = draw(st.sampled_from([0, 8, 16, 24, 32, 7]))
    fmt = draw(st.sampled_from([1, 3, 0xFFFE, 0]))
    data_size = draw(st.sampled_from([0, 100, 2**31, 2**32 - 1]))
    payload = SEEDS["wav"][44:4044]
    block = max(channels * bits // 8, 1) & 0xFFFF
    header = (
        b"RIFF"
        + (36 + len(payload)).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + fmt.to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * block & 0xFFFFFFFF).to_bytes(4, "little")
        + block.to_bytes(2, "little")
        + bits.to_bytes(2, "little")
        + b"data"
        + data_size.to_bytes(4, "little")
    )
    return header + payload


def check_one(tmp_path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        samples = mirfeat.load_audio(path, 16000)
    except mirfeat.AudioError as exc:
        assert str(path) in str(exc)  # a clear error naming the file
        return
    assert samples.dtype == np.float32 and samples.ndim == 1 and np.isfinite(samples).all()
    for family in (MUSICNN_FAMILY, VGGISH_FAMILY):
        bands = family.bands(samples)
        assert np.isfinite(bands).all()


SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


@SETTINGS
@given(data=mutated(), suffix=st.sampled_from([".wav", ".mp3", ".flac", ".ogg", ".m4a", ".bin"]))
def test_mutated_files_decode_or_fail_clearly(tmp_path_factory, data, suffix):
    check_one(tmp_path_factory.mktemp("fuzz"), data, suffix)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
@given(data=forged_wav())
def test_forged_wav_headers_decode_or_fail_clearly(tmp_path_factory, data):
    check_one(tmp_path_factory.mktemp("forged"), data, ".wav")
