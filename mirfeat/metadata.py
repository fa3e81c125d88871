"""Essentia model metadata (the JSON published beside each model)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from mirfeat.errors import ModelError


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
    source: str = ""  # where it was read from, for messages

    @classmethod
    def from_dict(cls, doc: dict, source: str = "metadata") -> ModelMetadata:
        """Parse Essentia's metadata JSON; a ModelError naming `source` and the field when one is malformed."""
        if not isinstance(doc, dict):
            raise ModelError(f"{source}: model metadata must be a JSON object")
        inference = _field(doc, "inference", dict, source, {})
        algorithm = _field(inference, "algorithm", str, source, None, "inference.")
        if not algorithm:
            raise ModelError(f"{source}: no inference.algorithm; is this an Essentia model JSON?")
        rate = inference.get("sample_rate", 16000)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, str)):
            raise ModelError(f"{source}: inference.sample_rate must be a number, not {rate!r}")
        try:
            sample_rate = int(float(rate))
        except ValueError:
            raise ModelError(f"{source}: inference.sample_rate must be a number, not {rate!r}") from None
        if sample_rate <= 0:
            raise ModelError(f"{source}: inference.sample_rate must be positive, not {rate!r}")
        classes = doc.get("classes") or []
        if isinstance(classes, str):  # embedding models publish "" for classes
            classes = [classes] if classes else []
        if not isinstance(classes, list):
            raise ModelError(f"{source}: classes must be a list of labels, not {type(classes).__name__}")
        schema = _field(doc, "schema", dict, source, {})
        inputs = [_entry_name(e, f"schema.inputs[{i}]", source) for i, e in enumerate(_list(schema, "inputs", source))]
        outputs = []
        for i, entry in enumerate(_list(schema, "outputs", source)):
            where = f"schema.outputs[{i}]"
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if shape is not None and not isinstance(shape, list):
                raise ModelError(f"{source}: {where}.shape must be a list, not {shape!r}")
            purpose = entry.get("output_purpose", "") if isinstance(entry, dict) else ""
            outputs.append(
                OutputSpec(
                    name=_entry_name(entry, where, source),
                    purpose=purpose if isinstance(purpose, str) else "",
                    shape=tuple(shape) if shape else None,
                )
            )
        name = doc.get("name")
        return cls(
            name=name if isinstance(name, str) and name else Path(source).stem,
            algorithm=algorithm,
            sample_rate=sample_rate,
            classes=[str(c) for c in classes],
            inputs=inputs,
            outputs=outputs,
            raw=doc,
            source=source,
        )

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: cannot read model metadata ({exc})") from None
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


def _field(doc: dict, key: str, kind: type, source: str, default, prefix: str = ""):
    value = doc.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise ModelError(f"{source}: {prefix}{key} must be a {_KINDS[kind]}, not {value!r}")
    return value


def _list(schema: dict, key: str, source: str) -> list:
    value = schema.get(key) or []
    if not isinstance(value, list):
        raise ModelError(f"{source}: schema.{key} must be a list, not {value!r}")
    return value


def _entry_name(entry, where: str, source: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ModelError(f"{source}: {where} must be an object with a tensor name, not {entry!r}")
    return entry["name"]


_KINDS: dict[type, str] = {dict: "JSON object", str: "string", list: "list"}
