"""The table of Essentia's published models: name -> where the .json and the .onnx (or .pb) live.

Essentia's site lays its models out as `<base>/<kind>/<family>/<name>.<ext>` under
https://essentia.upf.edu/models/ (kind: feature-extractors, classification-heads, ...). A mirror
base URL with the same layout can replace it (`MIRFEAT_MIRROR`, see `mirfeat.cache`).

Each entry says whether Essentia publishes an ONNX file for the model:

- `onnx=True`: a `.onnx` beside the `.pb` (seen in the site's directory listings or fetched by
  that URL in public code): mirfeat downloads it as it is.
- `onnx=False`: TensorFlow only (`genre_discogs400-discogs-effnet-1`, the bs64 / bs1 EffNet graphs,
  the 2020 auto-tagging graphs): mirfeat downloads the `.pb` and converts it (the convert extra).
- `onnx=None`: not known; the `.onnx` is tried first and the `.pb` (+ conversion) on a 404. MAEST
  ("ONNX versions with dynamic batch are provided", file names not seen), TempoCNN, CREPE,
  FSD-SINet, and the heads of six directories whose listing was not seen.

Sources: the example-script generator's list (src/examples/python/models/models.yaml) and
doc/sphinxdoc/models.rst of MTG/essentia at master (May 2026), the site's directory listings, and
/work/shared/docs/essentia-signatures.md §4-§5. OpenL3 and its heads, and Spleeter, are left out:
Essentia has no OpenL3 wrapper and mirfeat no family for them.

A head names the embedding model mirfeat fetches with it: the ONNX batch variant where Essentia
publishes one (heads on `discogs-effnet-bs64-1` get `discogs-effnet-bsdynamic-1`, which `Head`
finds beside it). No sha256 is pinned here: the site's JSON files are edited in place (e.g.
danceability-discogs-effnet-1.json, 2025-10-28), and the hashes public projects pin for the same
.onnx disagree; `mirfeat.cache` records each file's sha256 on first download and checks it on every
later load. An entry's `sha256` ({"onnx": hex, ...}) makes a mismatch an error from the first
download on.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mirfeat.errors import ModelError

ESSENTIA_BASE = "https://essentia.upf.edu/models/"


@dataclass(frozen=True)
class RegistryEntry:
    """One published model.

    directory: `<kind>/<family>` under the base URL, e.g. "classification-heads/danceability".
    algorithm: Essentia's wrapper (the JSON's inference.algorithm); mirfeat runs those in
        `mirfeat.families.FAMILIES`.
    onnx: True (a published .onnx), False (.pb only: converted after download), None (unknown:
        .onnx tried first, .pb on a 404).
    embedding: for a head, the registry name of the model that computes its input.
    sha256: pinned digests by extension ("onnx", "pb", "json").
    """

    name: str
    directory: str
    algorithm: str
    onnx: bool | None = True
    embedding: str | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def kind(self) -> str:
        return self.directory.split("/")[0]

    @property
    def is_head(self) -> bool:
        return self.embedding is not None

    def url(self, ext: str, base: str = ESSENTIA_BASE) -> str:
        """URL of `<name>.<ext>` under `base` (Essentia's site or a mirror with its layout)."""
        return f"{base.rstrip('/')}/{self.directory}/{self.name}.{ext}"

    @property
    def format(self) -> str:
        """How mirfeat gets the .onnx: "onnx", "pb" (converted) or "onnx|pb" (unknown)."""
        return {True: "onnx", False: "pb", None: "onnx|pb"}[self.onnx]

    @property
    def runnable(self) -> bool:
        """Whether mirfeat has a family for its algorithm."""
        from mirfeat.families import FAMILIES

        return self.algorithm in FAMILIES


MUSICNN = "TensorflowPredictMusiCNN"
VGGISH = "TensorflowPredictVGGish"
EFFNET = "TensorflowPredictEffnetDiscogs"
MAEST = "TensorflowPredictMAEST"
TEMPOCNN = "TensorflowPredictTempoCNN"
CREPE = "TensorflowPredictCREPE"
FSDSINET = "TensorflowPredictFSDSINet"
HEAD_2D = "TensorflowPredict2D"
HEAD_PLAIN = "TensorflowPredict"  # the MAEST genre heads


def _audio_models() -> list[RegistryEntry]:
    effnet_dir = "feature-extractors/discogs-effnet"
    maest_dir = "feature-extractors/maest"
    same_weights = "same weights as discogs-effnet-bsdynamic-1, which Essentia publishes as ONNX"
    models = [
        RegistryEntry("msd-musicnn-1", "feature-extractors/musicnn", MUSICNN),
        # The 2020 auto-tagging graphs (musicnn's weights): .pb only.
        RegistryEntry("mtt-musicnn-1", "autotagging/mtt", MUSICNN, onnx=False),
        RegistryEntry("msd-vgg-1", "autotagging/msd", MUSICNN, onnx=False),
        RegistryEntry("mtt-vgg-1", "autotagging/mtt", MUSICNN, onnx=False),
        RegistryEntry("audioset-vggish-3", "feature-extractors/vggish", VGGISH),
        RegistryEntry("audioset-yamnet-1", "audio-event-recognition/yamnet", VGGISH),
        RegistryEntry("discogs-effnet-bsdynamic-1", effnet_dir, EFFNET),
        RegistryEntry("discogs-effnet-bs64-1", effnet_dir, EFFNET, onnx=False, note=same_weights),
        RegistryEntry("discogs-effnet-bs1-1", effnet_dir, EFFNET, onnx=False, note=same_weights),
    ]
    models += [
        RegistryEntry(f"discogs_{target}_embeddings-effnet-bs64-1", effnet_dir, EFFNET)
        for target in ("artist", "label", "multi", "release", "track")
    ]
    models += [
        RegistryEntry(f"discogs-maest-{variant}-2", maest_dir, MAEST, onnx=None)
        for variant in ("5s-pw", "10s-dw", "10s-fs", "10s-pw", "20s-pw", "30s-pw", "30s-pw-ts", "30s-pw-519l")
    ]
    models += [
        RegistryEntry(name, "tempo/tempocnn", TEMPOCNN, onnx=None)
        for name in ("deepsquare-k16-3", "deeptemp-k4-3", "deeptemp-k16-3")
    ]
    models += [
        RegistryEntry(f"crepe-{size}-1", "pitch/crepe", CREPE, onnx=None)
        for size in ("full", "large", "medium", "small", "tiny")
    ]
    models += [
        RegistryEntry(f"fsd-sinet-{variant}-1", "audio-event-recognition/fsd-sinet", FSDSINET, onnx=None)
        for variant in ("vgg41-tlpf", "vgg42-aps", "vgg42-tlpf", "vgg42-tlpf_aps")
    ]
    return models


# Classification heads by directory under classification-heads/ (OpenL3 heads left out).
HEADS: dict[str, tuple[str, ...]] = {
    "approachability": (
        "approachability_2c-discogs-effnet-1",
        "approachability_3c-discogs-effnet-1",
        "approachability_regression-discogs-effnet-1",
    ),
    "danceability": (
        "danceability-audioset-vggish-1",
        "danceability-audioset-yamnet-1",
        "danceability-discogs-effnet-1",
        "danceability-msd-musicnn-1",
    ),
    "deam": (
        "deam-audioset-vggish-1",
        "deam-audioset-vggish-2",
        "deam-msd-musicnn-1",
        "deam-msd-musicnn-2",
    ),
    "emomusic": (
        "emomusic-audioset-vggish-1",
        "emomusic-audioset-vggish-2",
        "emomusic-msd-musicnn-1",
        "emomusic-msd-musicnn-2",
    ),
    "engagement": (
        "engagement_2c-discogs-effnet-1",
        "engagement_3c-discogs-effnet-1",
        "engagement_regression-discogs-effnet-1",
    ),
    "fma_small": (
        "fma_small-discogs-effnet-1",
        "fma_small-discogs_artist_embeddings-effnet-1",
        "fma_small-discogs_label_embeddings-effnet-1",
        "fma_small-discogs_multi_embeddings-effnet-1",
        "fma_small-discogs_release_embeddings-effnet-1",
        "fma_small-discogs_track_embeddings-effnet-1",
    ),
    "fs_loop_ds": ("fs_loop_ds-msd-musicnn-1",),
    "gender": (
        "gender-audioset-vggish-1",
        "gender-audioset-yamnet-1",
        "gender-discogs-effnet-1",
        "gender-msd-musicnn-1",
    ),
    "genre_discogs400": (
        "genre_discogs400-discogs-effnet-1",
        "genre_discogs400-discogs-maest-10s-dw-1",
        "genre_discogs400-discogs-maest-10s-fs-1",
        "genre_discogs400-discogs-maest-10s-pw-1",
        "genre_discogs400-discogs-maest-20s-pw-1",
        "genre_discogs400-discogs-maest-30s-pw-1",
        "genre_discogs400-discogs-maest-30s-pw-ts-1",
        "genre_discogs400-discogs-maest-5s-pw-1",
    ),
    "genre_discogs519": ("genre_discogs519-discogs-maest-30s-pw-519l-1",),
    "genre_dortmund": (
        "genre_dortmund-audioset-vggish-1",
        "genre_dortmund-audioset-yamnet-1",
        "genre_dortmund-discogs-effnet-1",
        "genre_dortmund-msd-musicnn-1",
    ),
    "genre_electronic": ("genre_electronic-discogs-effnet-1",),
    "genre_rosamerica": (
        "genre_rosamerica-audioset-vggish-1",
        "genre_rosamerica-audioset-yamnet-1",
        "genre_rosamerica-discogs-effnet-1",
        "genre_rosamerica-msd-musicnn-1",
    ),
    "genre_tzanetakis": (
        "genre_tzanetakis-audioset-vggish-1",
        "genre_tzanetakis-audioset-yamnet-1",
        "genre_tzanetakis-discogs-effnet-1",
        "genre_tzanetakis-msd-musicnn-1",
    ),
    "mood_acoustic": (
        "mood_acoustic-audioset-vggish-1",
        "mood_acoustic-audioset-yamnet-1",
        "mood_acoustic-discogs-effnet-1",
        "mood_acoustic-msd-musicnn-1",
    ),
    "mood_aggressive": (
        "mood_aggressive-audioset-vggish-1",
        "mood_aggressive-audioset-yamnet-1",
        "mood_aggressive-discogs-effnet-1",
        "mood_aggressive-msd-musicnn-1",
    ),
    "mood_electronic": (
        "mood_electronic-audioset-vggish-1",
        "mood_electronic-audioset-yamnet-1",
        "mood_electronic-discogs-effnet-1",
        "mood_electronic-msd-musicnn-1",
    ),
    "mood_happy": (
        "mood_happy-audioset-vggish-1",
        "mood_happy-audioset-yamnet-1",
        "mood_happy-discogs-effnet-1",
        "mood_happy-msd-musicnn-1",
    ),
    "mood_party": (
        "mood_party-audioset-vggish-1",
        "mood_party-audioset-yamnet-1",
        "mood_party-discogs-effnet-1",
        "mood_party-msd-musicnn-1",
    ),
    "mood_relaxed": (
        "mood_relaxed-audioset-vggish-1",
        "mood_relaxed-audioset-yamnet-1",
        "mood_relaxed-discogs-effnet-1",
        "mood_relaxed-msd-musicnn-1",
    ),
    "mood_sad": (
        "mood_sad-audioset-vggish-1",
        "mood_sad-audioset-yamnet-1",
        "mood_sad-discogs-effnet-1",
        "mood_sad-msd-musicnn-1",
    ),
    "moods_mirex": (
        "moods_mirex-audioset-vggish-1",
        "moods_mirex-msd-musicnn-1",
    ),
    "msd": ("msd-msd-musicnn-1",),
    "mtg_jamendo_genre": (
        "mtg_jamendo_genre-discogs-effnet-1",
        "mtg_jamendo_genre-discogs_artist_embeddings-effnet-1",
        "mtg_jamendo_genre-discogs_label_embeddings-effnet-1",
        "mtg_jamendo_genre-discogs_multi_embeddings-effnet-1",
        "mtg_jamendo_genre-discogs_release_embeddings-effnet-1",
        "mtg_jamendo_genre-discogs_track_embeddings-effnet-1",
    ),
    "mtg_jamendo_instrument": (
        "mtg_jamendo_instrument-discogs-effnet-1",
        "mtg_jamendo_instrument-discogs_artist_embeddings-effnet-1",
        "mtg_jamendo_instrument-discogs_label_embeddings-effnet-1",
        "mtg_jamendo_instrument-discogs_multi_embeddings-effnet-1",
        "mtg_jamendo_instrument-discogs_release_embeddings-effnet-1",
        "mtg_jamendo_instrument-discogs_track_embeddings-effnet-1",
    ),
    "mtg_jamendo_moodtheme": (
        "mtg_jamendo_moodtheme-discogs-effnet-1",
        "mtg_jamendo_moodtheme-discogs_artist_embeddings-effnet-1",
        "mtg_jamendo_moodtheme-discogs_label_embeddings-effnet-1",
        "mtg_jamendo_moodtheme-discogs_multi_embeddings-effnet-1",
        "mtg_jamendo_moodtheme-discogs_release_embeddings-effnet-1",
        "mtg_jamendo_moodtheme-discogs_track_embeddings-effnet-1",
    ),
    "mtg_jamendo_top50tags": (
        "mtg_jamendo_top50tags-discogs-effnet-1",
        "mtg_jamendo_top50tags-discogs_artist_embeddings-effnet-1",
        "mtg_jamendo_top50tags-discogs_label_embeddings-effnet-1",
        "mtg_jamendo_top50tags-discogs_multi_embeddings-effnet-1",
        "mtg_jamendo_top50tags-discogs_release_embeddings-effnet-1",
        "mtg_jamendo_top50tags-discogs_track_embeddings-effnet-1",
    ),
    "mtt": (
        "mtt-discogs-effnet-1",
        "mtt-discogs_artist_embeddings-effnet-1",
        "mtt-discogs_label_embeddings-effnet-1",
        "mtt-discogs_multi_embeddings-effnet-1",
        "mtt-discogs_release_embeddings-effnet-1",
        "mtt-discogs_track_embeddings-effnet-1",
    ),
    "muse": (
        "muse-audioset-vggish-1",
        "muse-audioset-vggish-2",
        "muse-msd-musicnn-1",
        "muse-msd-musicnn-2",
    ),
    "nsynth_acoustic_electronic": ("nsynth_acoustic_electronic-discogs-effnet-1",),
    "nsynth_bright_dark": ("nsynth_bright_dark-discogs-effnet-1",),
    "nsynth_instrument": ("nsynth_instrument-discogs-effnet-1",),
    "nsynth_reverb": ("nsynth_reverb-discogs-effnet-1",),
    "timbre": ("timbre-discogs-effnet-1",),
    "tonal_atonal": (
        "tonal_atonal-audioset-vggish-1",
        "tonal_atonal-audioset-yamnet-1",
        "tonal_atonal-discogs-effnet-1",
        "tonal_atonal-msd-musicnn-1",
    ),
    "voice_instrumental": (
        "voice_instrumental-audioset-vggish-1",
        "voice_instrumental-audioset-yamnet-1",
        "voice_instrumental-discogs-effnet-1",
        "voice_instrumental-msd-musicnn-1",
    ),
}

# Head directories whose listing was not seen and whose .onnx no public code fetches: tried, .pb on a 404.
_HEADS_ONNX_UNKNOWN = frozenset(
    {
        "genre_electronic",
        "genre_rosamerica",
        "mood_electronic",
        "mtg_jamendo_top50tags",
        "nsynth_instrument",
        "nsynth_reverb",
    }
)
# Heads published without an .onnx (the site's listing has .json and .pb only).
_HEADS_PB_ONLY = frozenset({"genre_discogs400-discogs-effnet-1"})

# A head's name ends with the embedding model it was trained on, in the heads' own spelling.
_EMBEDDING_SUFFIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-msd-musicnn-\d+$"), "msd-musicnn-1"),
    (re.compile(r"-audioset-vggish-\d+$"), "audioset-vggish-3"),
    (re.compile(r"-audioset-yamnet-\d+$"), "audioset-yamnet-1"),
    (re.compile(r"-discogs-effnet-\d+$"), "discogs-effnet-bsdynamic-1"),
    (re.compile(r"-discogs_(\w+)_embeddings-effnet-\d+$"), r"discogs_\1_embeddings-effnet-bs64-1"),
    (re.compile(r"-discogs-maest-([\w-]+)-\d+$"), r"discogs-maest-\1-2"),
)


def head_embedding(name: str) -> str:
    """The registry name of the embedding model a head's name says it reads."""
    for pattern, embedding in _EMBEDDING_SUFFIXES:
        match = pattern.search(name)
        if match:
            return match.expand(embedding)
    raise ValueError(f"{name}: no known embedding model in the name")


def _heads() -> list[RegistryEntry]:
    entries = []
    for directory, names in HEADS.items():
        for name in names:
            embedding = head_embedding(name)
            algorithm = HEAD_PLAIN if "-maest-" in embedding else HEAD_2D
            onnx = False if name in _HEADS_PB_ONLY else None if directory in _HEADS_ONNX_UNKNOWN else True
            entries.append(RegistryEntry(name, f"classification-heads/{directory}", algorithm, onnx, embedding))
    return entries


MODELS: dict[str, RegistryEntry] = {entry.name: entry for entry in _audio_models() + _heads()}


def lookup(name: str, registry: Mapping[str, RegistryEntry] | None = None) -> RegistryEntry:
    """The entry of `name`; a ModelError naming the closest names otherwise."""
    table = MODELS if registry is None else registry
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"{name}: not a model in mirfeat's registry of Essentia's published models{hint} "
            "(`mirfeat models list` shows them)"
        ) from None
