"""Audio in: decode a file or take an array, downmix to mono, resample to a signature's rate.

Files are decoded as Essentia's MonoLoader decodes them (FFmpeg, through PyAV), downmixed as it
downmixes (0.5 * (L + R) in float32) and resampled as it resamples (libsamplerate, its converter
fed 4096 samples at a time, the ratio computed in float32), one block at a time: memory does not
grow with the file's length. Where MonoLoader (FFmpeg 2.8, libsamplerate before 0.1.9) differs
from what current FFmpeg and libsamplerate do by themselves, this follows MonoLoader:

- mp3 (also mp1, mp2): the fixed-point decoder (current FFmpeg picks the float one: 3e-5 apart);
- Ogg Vorbis: the start is trimmed, the end is not (the last granule's padding stays in);
- MP4 / M4A / MOV (also the audio of a video): the edit list is ignored, so the encoder's priming
  samples stay in;
- the resampler is flushed at the end only when the length is not a multiple of 4096 (its
  streaming Resample never sees the end of a stream that ends on a full chunk), so such files
  lose the converter's last ~3 ms; where the last output lands exactly on the end, the sinc
  converters give one sample fewer and zero-order hold one more (`Resampler`).

mirfeat also decodes what MonoLoader refuses: Opus ("Unsupported codec" in Essentia's FFmpeg 2.8)
and files with more than two channels (averaged).
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np
import samplerate

from mirfeat.errors import AudioError, display_name

AudioInput = str | os.PathLike | np.ndarray

# Essentia's MonoLoader resamples with libsamplerate; its resampleQuality numbers that library's
# converters. Using the same library (default: sinc medium) keeps decoded audio within ~1e-7 of
# Essentia's, where a different high-quality resampler differs by up to ~1e-1 on bright material.
RESAMPLE_QUALITY = {0: "sinc_best", 1: "sinc_medium", 2: "sinc_fastest", 3: "zero_order_hold", 4: "linear"}
# Essentia's streaming Resample takes its input 4096 samples at a time.
ESSENTIA_CHUNK = 4096
# libsamplerate converts ratios in [1/256, 256] (SRC_MAX_RATIO); Essentia fails outside it.
MAX_RATIO = 256
DEFAULT_BLOCK = 1 << 16
_MAX_RATE = 1 << 24  # Essentia carries rates as float32: beyond 2^24 Hz they are not whole numbers


def load_audio(
    source: AudioInput, sample_rate: int, *, input_rate: int | None = None, resample_quality: int = 1
) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from a file path or an array.

    Files: anything FFmpeg decodes (wav, flac, mp3, ogg, opus, m4a/aac/alac, aiff, wma, the audio
    of a video, ...), as Essentia's MonoLoader decodes it. Arrays: [samples] or [samples, channels]
    (or [channels, samples] with at most 8 channels), float in [-1, 1] or integer PCM (uint8 offset
    binary, int16, int32), with `input_rate` giving their rate (None: already `sample_rate`; a
    file's own rate is read from it). Stereo becomes 0.5 * (L + R), Essentia's MonoLoader downmix;
    more channels are averaged. Rates must be whole positive numbers of Hz, and within a ratio of
    256 of each other (libsamplerate's range, as in Essentia). Errors are AudioErrors naming the file.
    """
    blocks = list(
        stream_audio(source, sample_rate, input_rate=input_rate, resample_quality=resample_quality, block_size=1 << 20)
    )
    if not blocks:
        return np.zeros(0, np.float32)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def stream_audio(
    source: AudioInput,
    sample_rate: int,
    *,
    input_rate: int | None = None,
    resample_quality: int = 1,
    block_size: int = DEFAULT_BLOCK,
) -> Iterator[np.ndarray]:
    """`load_audio` in blocks: mono float32 arrays of `block_size` samples at `sample_rate` (the last
    one shorter), decoded and resampled as they are needed. Their concatenation is `load_audio`'s
    output; memory stays bounded whatever the file's length. Errors (AudioError) come when the
    source is opened, before the first block, or where a file stops being readable."""
    name = "array" if isinstance(source, np.ndarray) else display_name(source)
    out_rate = check_rate(sample_rate, "sample_rate")
    recipe = RESAMPLE_QUALITY.get(resample_quality) if isinstance(resample_quality, int) else None
    if recipe is None:
        raise ValueError(f"resample_quality must be 0..4 (Essentia's resampleQuality), not {resample_quality!r}")
    if not isinstance(block_size, numbers.Integral) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, not {block_size!r}")
    if isinstance(source, np.ndarray):
        rate = out_rate if input_rate is None else check_rate(input_rate, "input_rate", name)
        mono = downmix(source, name)
        resampler = Resampler(rate, out_rate, recipe, name, whole_array=len(mono))
        return _blocks(resampler.run(_chunks(mono)), int(block_size))
    try:
        decoder = _Decoder(source, name)  # opens now: a bad file fails here, not at the first next()
    except AudioError:
        raise
    except Exception as exc:  # whatever a damaged file makes FFmpeg or PyAV raise
        raise AudioError(f"{name}: cannot decode as audio ({type(exc).__name__}: {exc})") from None
    resampler = Resampler(decoder.rate, out_rate, recipe, name)
    return _named_errors(_blocks(resampler.run(decoder), int(block_size)), name)


def _named_errors(blocks: Iterator[np.ndarray], name: str) -> Iterator[np.ndarray]:
    """Blocks, with any failure of a damaged file while decoding turned into an AudioError naming it."""
    try:
        yield from blocks
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{name}: cannot decode as audio ({type(exc).__name__}: {exc})") from None


def check_rate(rate: object, what: str = "sample rate", name: str | None = None) -> int:
    """A sample rate as a positive int; 0, negative, NaN, inf, bool or fractional rates are errors."""
    where = f"{name}: " if name else ""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise AudioError(f"{where}{what} must be a number of Hz, not {rate!r}")
    value = float(rate)
    if not math.isfinite(value) or value <= 0 or value != int(value) or value > _MAX_RATE:
        raise AudioError(f"{where}{what} must be a whole positive number of Hz up to {_MAX_RATE}, not {rate!r}")
    return int(value)


# -- arrays -------------------------------------------------------------------------------------


def to_float(samples: np.ndarray, name: str = "array") -> np.ndarray:
    """PCM of any numeric dtype -> float32, as FFmpeg's sample-format conversion does it:
    signed ints / 2^(bits-1), unsigned (offset binary: uint8 WAV) (x - 2^(bits-1)) / 2^(bits-1)."""
    samples = np.asarray(samples)
    kind = samples.dtype.kind
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind not in "iu":
        raise AudioError(f"{name}: audio must be numeric PCM, got dtype {samples.dtype}")
    if samples.dtype.itemsize > 4:  # no PCM is 64-bit; most likely Python ints holding 16-bit values
        raise AudioError(
            f"{name}: {samples.dtype} samples are not PCM (8-32 bits); convert them to the PCM type they "
            "hold (e.g. np.int16) or to float in [-1, 1]"
        )
    half = 2.0 ** (8 * samples.dtype.itemsize - 1)
    scale = np.float32(1 / half)
    if kind == "u":
        if samples.dtype.itemsize == 1:  # exact in float32
            return (samples.astype(np.float32) - np.float32(128)) * scale
        return ((samples.astype(np.float64) - half) * (1 / half)).astype(np.float32)
    return samples.astype(np.float32) * scale


def downmix(samples: np.ndarray, name: str = "array", channels_first: bool | None = None) -> np.ndarray:
    """[samples] / [samples, channels] / [channels, samples] -> mono float32 [samples].

    Stereo is (L + R) * 0.5 in float32, exactly Essentia's MonoMixer; more channels are averaged.
    `channels_first` None guesses: a first axis of at most 8 that is the shorter one is channels.
    NaN or infinite samples are an AudioError.
    """
    samples = to_float(samples, name)
    if samples.ndim == 2:
        if channels_first is None:
            channels_first = 0 < samples.shape[0] <= 8 and samples.shape[0] < samples.shape[1]
        if channels_first:
            samples = samples.T
        if samples.shape[1] == 0:
            raise AudioError(f"{name}: audio has no channels")
        samples = _mix(samples)
    elif samples.ndim != 1:
        raise AudioError(f"{name}: audio must be 1-D or 2-D, got shape {samples.shape}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    return samples


def _mix(frames: np.ndarray) -> np.ndarray:
    """float32 [samples, channels] -> [samples]."""
    channels = frames.shape[1]
    if channels == 1:
        return frames[:, 0]
    if channels == 2:
        return (frames[:, 0] + frames[:, 1]) * np.float32(0.5)
    return frames.mean(axis=1, dtype=np.float32)


def _chunks(mono: np.ndarray, size: int = ESSENTIA_CHUNK) -> Iterator[np.ndarray]:
    for start in range(0, len(mono), size):
        yield mono[start : start + size]


def _blocks(pieces: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup arrays into blocks of exactly `size` (the last one shorter)."""
    pending: list[np.ndarray] = []
    count = 0
    for piece in pieces:
        if not len(piece):
            continue
        pending.append(piece)
        count += len(piece)
        if count >= size:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            full = count - count % size
            for start in range(0, full, size):
                yield joined[start : start + size]
            rest = joined[full:]
            pending, count = ([rest], len(rest)) if len(rest) else ([], 0)
    if count:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


# -- resampling -----------------------------------------------------------------------------------


class Resampler:
    """libsamplerate as Essentia runs it, one block at a time.

    Files: as MonoLoader's streaming Resample: input in chunks of 4096, the ratio in float32, the
    last partial chunk sent with end_of_input (a stream that ends on a full chunk is never flushed).
    Arrays (`whole_array` = their length): as the standard-mode Resample (src_simple), flushed at the
    end; the sinc converters give the same samples in any chunking, the linear and zero-order-hold
    ones do not, so those take the array in one piece. Equal rates pass the samples through.
    """

    def __init__(self, input_rate: int, output_rate: int, recipe: str, name: str, whole_array: int | None = None):
        self.ratio = float(np.float32(output_rate) / np.float32(input_rate))
        if not 1 / MAX_RATIO <= self.ratio <= MAX_RATIO:
            raise AudioError(
                f"{name}: cannot resample {input_rate} Hz to {output_rate} Hz: libsamplerate (and so Essentia) "
                f"converts ratios from 1/{MAX_RATIO} to {MAX_RATIO} only"
            )
        self.recipe = recipe
        self.sinc = recipe.startswith("sinc")
        self.flush_full_chunk = whole_array is not None
        self.chunk = ESSENTIA_CHUNK if self.sinc or whole_array is None else max(whole_array, 1)

    def run(self, pieces: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        if self.ratio == 1.0:  # Essentia copies
            yield from pieces
            return
        converter = samplerate.Resampler(self.recipe, channels=1)
        pending: list[np.ndarray] = []
        count = 0
        total = 0  # input samples
        produced = 0  # output samples
        for piece in pieces:
            pending.append(piece)
            count += len(piece)
            total += len(piece)
            if count > self.chunk:  # keep at least one sample back for the end
                joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
                full = (count - 1) // self.chunk * self.chunk
                for start in range(0, full, self.chunk):
                    out = converter.process(joined[start : start + self.chunk], self.ratio, False)
                    produced += len(out)
                    yield out
                pending, count = [joined[full:]], count - full
        if not total:
            return
        last = np.concatenate(pending) if len(pending) > 1 else pending[0]
        if self.sinc and (self.flush_full_chunk or total % self.chunk):
            if len(last) > 1:
                body = converter.process(last[:-1], self.ratio, False)
                produced += len(body)
                yield body
            tail = self._flush(converter, last[-1:])
            if self._lands_on_end(produced + len(tail), total):
                # Essentia's libsamplerate (older than 0.1.9) stops one output earlier there: its
                # sinc termination test is `>=` where libsamplerate has had `>` since 2015.
                tail = tail[:-1]
            yield tail
            return
        # MonoLoader never flushes a stream that ends on a full chunk (its streaming Resample sees
        # no input left and never sends end_of_input); linear and zero-order hold have no tail.
        out = converter.process(last, self.ratio, not self.sinc)
        if self.recipe == "zero_order_hold" and self._lands_on_end(produced + len(out), total):
            # The next output lands exactly on the end, which zero-order hold emits (`<=`) when it
            # has room: Essentia's buffer has it, this binding's ceil(n * ratio) does not.
            out = np.append(out, last[-1])
        yield out

    def _flush(self, converter: samplerate.Resampler, last: np.ndarray) -> np.ndarray:
        """The last sample with end_of_input, and all of the converter's tail.

        The binding gives each call room for ceil(len(input) * ratio) samples, which has no room
        for the tail (half the filter) that end_of_input releases. So the last sample goes alone
        with end_of_input (libsamplerate then marks the end and pads with zeros), then calls with
        placeholder input (ignored once the end is marked) collect the tail until it is empty.
        """
        pieces = [converter.process(last, self.ratio, True)]
        room = np.zeros(math.ceil(ESSENTIA_CHUNK / self.ratio), np.float32)
        for _ in range(2 * MAX_RATIO + 16):  # the tail is at most ~46 * max(ratio, 1) samples
            pieces.append(converter.process(room, self.ratio, True))
            if not len(pieces[-1]):
                return np.concatenate(pieces)
        raise AudioError("libsamplerate did not finish its tail")  # pragma: no cover

    def _lands_on_end(self, produced: int, total: int) -> bool:
        """Whether output number `produced` (counting from 0) falls exactly on the end of the input.
        With ratios whose inverse is a short binary fraction (0.5, 0.25, 2, ...) libsamplerate's
        positions are exact, and this is every input whose length times the ratio is whole; other
        ratios accumulate rounding in the position and do not land exactly."""
        step = Fraction(1.0 / self.ratio)
        return step.denominator <= 1 << 20 and produced * step == total


# -- files ----------------------------------------------------------------------------------------


class _Decoder:
    """A file's first audio stream (MonoLoader's audioStream=0), decoded by FFmpeg (PyAV) into mono
    float32 pieces, following MonoLoader's decoder choices (module docstring). Iterating it closes
    the file at the end."""

    def __init__(self, path: str | os.PathLike, name: str):
        import av  # imported here: PyAV loads FFmpeg's libraries, arrays do not need them

        self.av = av
        self.name = name
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise AudioError(f"{name}: no such file") from None
        except OSError as exc:
            raise AudioError(f"{name}: cannot open ({exc.strerror or exc})") from None
        if stat.S_ISDIR(info.st_mode):
            raise AudioError(f"{name}: is a directory, not an audio file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO, socket or device would block or never end
            raise AudioError(f"{name}: not a regular file (a pipe, socket or device); save the audio to a file")
        try:
            # MonoLoader ignores MP4 edit lists (its FFmpeg 2.8 did not apply them)
            self.container = av.open(os.fspath(path), options={"ignore_editlist": "1"})
        except PermissionError:
            raise AudioError(f"{name}: permission denied") from None
        except (av.FFmpegError, OSError, ValueError, UnicodeError) as exc:
            raise AudioError(f"{name}: cannot decode as audio ({_reason(exc)})") from None
        try:
            self._open_stream()
        except BaseException:
            self.container.close()
            raise

    def _open_stream(self) -> None:
        av = self.av
        if not self.container.streams.audio:
            raise AudioError(f"{self.name}: cannot decode as audio (no audio stream)")
        self.stream = self.container.streams.audio[0]
        params = self.stream.codec_context
        self.codec = params.name
        try:
            if self.codec in _FIXED_POINT:  # MonoLoader's FFmpeg 2.8 found the fixed-point one first
                self.decoder = av.CodecContext.create(_FIXED_POINT[self.codec], "r")
            else:
                self.decoder = params
            # Trimming is done here, not by FFmpeg: MonoLoader trims the start of every stream
            # (encoder delay, pre-skip) and the end of mp3 and Opus, not of Ogg Vorbis.
            self.decoder.flags2 |= _SKIP_MANUAL
            self.decoder.open()
        except (av.FFmpegError, ValueError) as exc:
            raise AudioError(f"{self.name}: cannot decode {self.codec} audio ({_reason(exc)})") from None
        self.rate = check_rate(params.sample_rate or 0, "sample rate", self.name)
        self.trim_end = self.codec != "vorbis"
        self.skip = 0  # start samples still to drop

    def __iter__(self) -> Iterator[np.ndarray]:
        av = self.av
        try:
            packets = self.container.demux(self.stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.FFmpegError:  # MonoLoader stops at a read error, keeping what it has
                    break
                if packet.size:
                    yield from self._decode(packet)
            yield from self._decode(None)
        finally:
            self.container.close()

    def _decode(self, packet) -> Iterator[np.ndarray]:
        try:
            frames = self.decoder.decode(packet)
        except (self.av.EOFError, self.av.InvalidDataError):  # MonoLoader skips frames it cannot decode
            return
        except self.av.FFmpegError as exc:
            raise AudioError(f"{self.name}: error decoding {self.codec} audio ({_reason(exc)})") from None
        for frame in frames:
            mono = self._trim(frame, _frame_to_mono(frame))
            if not len(mono):
                continue
            if not np.isfinite(mono).all():
                raise AudioError(f"{self.name}: audio contains NaN or infinite samples")
            yield mono

    def _trim(self, frame, mono: np.ndarray) -> np.ndarray:
        """FFmpeg's own trimming (libavcodec/decode.c), from the skip counts it leaves on the frame
        with AV_CODEC_FLAG2_SKIP_MANUAL, less the end trim for Ogg Vorbis."""
        start, end = _skip_samples(frame)
        if start:
            self.skip = start
        if self.skip:
            if len(mono) <= self.skip:
                self.skip -= len(mono)
                return mono[:0]
            mono, self.skip = mono[self.skip :], 0
        if self.trim_end and 0 < end <= len(mono):
            mono = mono[: len(mono) - end]
        return mono


# FFmpeg 8 picks the float MPEG audio decoders; FFmpeg 2.8 (MonoLoader's) the fixed-point ones.
_FIXED_POINT = {
    "mp1float": "mp1",
    "mp2float": "mp2",
    "mp3float": "mp3",
    "mp3adufloat": "mp3adu",
    "mp3on4float": "mp3on4",
}


_SKIP_MANUAL = 1 << 29  # AV_CODEC_FLAG2_SKIP_MANUAL: report samples to skip, do not skip them


def _skip_samples(frame) -> tuple[int, int]:
    """(start, end) samples to drop, from the frame's AV_FRAME_DATA_SKIP_SAMPLES side data."""
    for side in frame.side_data:
        if getattr(side.type, "name", str(side.type)).endswith("SKIP_SAMPLES"):
            data = bytes(side)
            if len(data) >= 8:
                return int.from_bytes(data[:4], "little"), int.from_bytes(data[4:8], "little")
    return 0, 0


def _frame_to_mono(frame) -> np.ndarray:
    """An FFmpeg audio frame -> mono float32: the sample format converted as libswresample
    converts it to float (MonoLoader's AudioLoader), then Essentia's downmix."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels) or 1
    data = data.T if frame.format.is_planar else data.reshape(-1, channels)
    return _mix(to_float(data, "frame"))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole file (as MonoLoader: first audio stream, its decoders) to mono float32 at
    the file's own rate, and that rate."""
    decoder = _Decoder(path, display_name(path))
    pieces = list(decoder)
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), decoder.rate


def resample(samples: np.ndarray, input_rate: int, output_rate: int, quality: int = 1) -> np.ndarray:
    """Resample a mono array as Essentia's standard-mode Resample does (libsamplerate, float32
    ratio); quality as Essentia's resampleQuality (0 sinc best .. 4 linear)."""
    return load_audio(
        np.asarray(samples, dtype=np.float32), output_rate, input_rate=input_rate, resample_quality=quality
    )
