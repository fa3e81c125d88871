"""mirfeat: Essentia's TensorFlow music models on onnxruntime, with Essentia's exact inputs.

>>> import mirfeat
>>> result = mirfeat.load_model()("song.mp3")      # bundled msd-musicnn-1
>>> result.top_k(5)                                # [(label, clip mean), ...]
>>> result.activations.shape, result.embeddings.shape   # (patches, 50), (patches, 200)
"""

from mirfeat.audio import load_audio, stream_audio
from mirfeat.errors import AudioError, DeviceError, MirfeatError, ModelError
from mirfeat.families import FAMILIES, Family
from mirfeat.metadata import ModelMetadata
from mirfeat.model import DEFAULT_MODEL, Head, Model, bundled_models, load_model
from mirfeat.pipeline import FileFailure, Pipeline, PipelineResult
from mirfeat.results import Result
from mirfeat.runner import FileResult, run
from mirfeat.runtime import RunOptions

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "FAMILIES",
    "AudioError",
    "DeviceError",
    "Family",
    "FileFailure",
    "FileResult",
    "Head",
    "MirfeatError",
    "ModelError",
    "Pipeline",
    "PipelineResult",
    "Model",
    "ModelMetadata",
    "Result",
    "RunOptions",
    "bundled_models",
    "load_audio",
    "load_model",
    "stream_audio",
    "run",
    "__version__",
]
