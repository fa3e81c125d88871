"""Essentia model metadata (the JSON published beside each model)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class OutputSpec:
    name: str  # TensorFlow-style name as the schema gives it, e.g. "model/Sigmoid"
    purpose: str  # "predictions", "embeddings" or ""
    shape: tuple | None = None


@dataclass
class ModelMetadata:
    """What the runtime needs from a model's JSON; `raw` keeps the whole document."""

    name: str
    algorithm: str
    sample_rate: int
    classes: list[str]
    inputs: list[str]
    outputs: list[OutputSpec]
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, doc: dict, source: str = "metadata") -> ModelMetadata:
        inference = doc.get("inference") or {}
        if "algorithm" not in inference:
            raise ValueError(f"{source}: no inference.algorithm; is this an Essentia model JSON?")
        schema = doc.get("schema") or {}
        classes = doc.get("classes") or []
        if isinstance(classes, str):  # embedding models publish "" for classes
            classes = [classes] if classes else []
        return cls(
            name=doc.get("name") or Path(source).stem,
            algorithm=inference["algorithm"],
            sample_rate=int(inference.get("sample_rate", 16000)),
            classes=[str(c) for c in classes],
            inputs=[entry["name"] for entry in schema.get("inputs", [])],
            outputs=[
                OutputSpec(
                    name=entry["name"],
                    purpose=entry.get("output_purpose", "") or "",
                    shape=tuple(entry["shape"]) if entry.get("shape") else None,
                )
                for entry in schema.get("outputs", [])
            ],
            raw=doc,
        )

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read model metadata ({exc})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: model metadata must be a JSON object")
        return cls.from_dict(doc, str(path))

    def with_algorithm(self, algorithm: str) -> ModelMetadata:
        """A copy that names another Essentia algorithm (the facade's wrapper decides the family)."""
        return replace(self, algorithm=algorithm)

    def output_for(self, purpose: str) -> str | None:
        """Name of the first schema output with this purpose, if any."""
        for output in self.outputs:
            if output.purpose == purpose:
                return output.name
        return None
