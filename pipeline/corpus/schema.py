"""The one schema of a sample's ``KEY.json``, whatever the source kind (docs/FORMAT.md is the contract).

Every sample has the same keys with the same types, so Hugging Face ``datasets`` (and any Arrow reader)
can load a corpus that mixes videos, image folders, URLs and later kinds: a value a source kind does
not have is null in a field that has one type everywhere. The tree below is written once and gives
the ``datasets.Features`` (``features()``), the dataset card's ``dataset_info`` (``card_features()``),
and the check every sample passes before it is written (``conform``). New fields go to FORMAT.md and
here first; a sample with a key the schema does not know is refused, so nothing drifts silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SchemaError(ValueError):
    """A sample json does not match the schema; the message names the key, the field and the problem."""


@dataclass(frozen=True)
class Leaf:
    dtype: str  # an Arrow/datasets dtype: string, int64, float64, float32, bool
    nullable: bool = False


@dataclass(frozen=True)
class Struct:
    fields: dict[str, Node]
    nullable: bool = False


@dataclass(frozen=True)
class List:
    item: Node
    nullable: bool = False


Node = Leaf | Struct | List

STR, INT, FLOAT = Leaf("string"), Leaf("int64"), Leaf("float64")
OPT_STR, OPT_INT, OPT_FLOAT = Leaf("string", True), Leaf("int64", True), Leaf("float64", True)

SAMPLE = Struct(
    {
        "key": STR,
        "task": Struct({"id": STR, "name": STR, "path": STR, "head": INT}),
        # text is KEY.txt, the training caption; template the taxonomy's one-line caption; the rest is a VLM's
        # hierarchical caption (null when there is none)
        "caption": Struct(
            {
                "text": STR,
                "template": OPT_STR,
                "process": OPT_STR,
                "steps": List(STR, nullable=True),
                "model": OPT_STR,
                "prompt_sha": OPT_STR,
            }
        ),
        "layout": Struct(
            {
                "rows": INT,
                "cols": INT,
                "order": STR,
                "cell": INT,
                "separator": INT,
                "size": List(INT),
                "positions": List(List(INT)),
            }
        ),
        "frames": List(
            Struct(
                {
                    "step": INT,
                    "source_frame": INT,
                    "file": OPT_STR,
                    "time": OPT_FLOAT,
                    "completion": OPT_FLOAT,
                    "progress": OPT_FLOAT,
                    "sharpness": OPT_FLOAT,
                    "occlusion": OPT_FLOAT,
                    "visible": OPT_FLOAT,
                    "blend": OPT_FLOAT,
                    "clip_relevance": OPT_FLOAT,
                    "clip_margin": OPT_FLOAT,
                    "clip_progress": OPT_FLOAT,
                    "clip_embedding": List(Leaf("float32"), nullable=True),
                    "added": OPT_FLOAT,
                }
            )
        ),
        "source": Struct(
            {
                "uri": STR,
                "id": OPT_STR,
                "sha256": STR,
                "kind": STR,
                "subject": OPT_STR,
                "license": OPT_STR,
                "attribution": OPT_STR,
                "fps": OPT_FLOAT,
                "frame_count": OPT_INT,
                "width": OPT_INT,
                "height": OPT_INT,
                "duration": OPT_FLOAT,
                "codec": OPT_STR,
                "rotation": OPT_INT,
            }
        ),
        "scores": Struct(
            {
                "process": Struct(
                    {
                        "gain": OPT_FLOAT,
                        "monotonic": OPT_FLOAT,
                        "area": OPT_FLOAT,
                        "step_change": OPT_FLOAT,
                        "spread": OPT_FLOAT,
                        "shots": OPT_INT,
                        "start": OPT_FLOAT,
                        "end": OPT_FLOAT,
                        "crop": List(FLOAT, nullable=True),
                        "clip_relevance": OPT_FLOAT,
                        "clip_margin": OPT_FLOAT,
                        "clip_order_confidence": OPT_FLOAT,
                        "clip_order_direction": OPT_FLOAT,
                        "elements": OPT_INT,
                        "visible_additions": OPT_INT,
                        "gates": List(
                            Struct(
                                {
                                    "name": STR,
                                    "value": FLOAT,
                                    "threshold": FLOAT,
                                    "test": STR,
                                    "passed": Leaf("bool"),
                                }
                            ),
                            nullable=True,
                        ),
                    }
                ),
                "clip": OPT_FLOAT,
            }
        ),
        "pipeline": Struct({"version": STR, "config_sha": STR}),
    }
)

# The WebDataset row a reader sees: the members of one key.
MEMBERS = ("jpg", "txt", "json")


def _fail(key: str, path: str, problem: str) -> SchemaError:
    return SchemaError(
        f"sample {key}: json.{path}: {problem} (schema: docs/FORMAT.md, pipeline/corpus/schema.py)"
    )


def _conform(node: Node, value: Any, path: str, key: str) -> Any:
    if value is None:
        if node.nullable:
            return None
        raise _fail(key, path, "is null or missing, and this field always has a value")
    if isinstance(node, Struct):
        if not isinstance(value, dict):
            raise _fail(key, path, f"expected an object, got {type(value).__name__}")
        unknown = sorted(set(value) - set(node.fields))
        if unknown:
            raise _fail(
                key,
                f"{path}.{unknown[0]}" if path else unknown[0],
                "is not in the sample schema; add it to docs/FORMAT.md and the schema first",
            )
        return {
            name: _conform(sub, value.get(name), f"{path}.{name}" if path else name, key)
            for name, sub in node.fields.items()
        }
    if isinstance(node, List):
        if not isinstance(value, (list, tuple)):
            raise _fail(key, path, f"expected a list, got {type(value).__name__}")
        return [_conform(node.item, v, f"{path}[{i}]", key) for i, v in enumerate(value)]
    return _leaf(node, value, path, key)


def _leaf(node: Leaf, value: Any, path: str, key: str) -> Any:
    if node.dtype == "string":
        if isinstance(value, str):
            return value
    elif node.dtype == "int64":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif node.dtype.startswith("float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(
                value
            )  # a whole number written as 25 would read as int64 in one sample, double in another
    elif node.dtype == "bool" and isinstance(value, bool):
        return value
    raise _fail(key, path, f"expected {node.dtype}, got {type(value).__name__} {value!r:.60}")


def conform(meta: dict) -> dict:
    """The sample json in its one shape: absent nullable fields filled with null, numbers in float fields as
    floats. Raises SchemaError for an unknown key, a missing required value or a value of the wrong type."""
    key = str(meta.get("key", "?")) if isinstance(meta, dict) else "?"
    return _conform(SAMPLE, meta, "", key)


def _yaml(name: str | None, node: Node) -> dict | str:
    """The dataset card's ``dataset_info.features`` entry (datasets' YAML form) for one field."""
    if isinstance(node, Leaf):
        body: dict | str = {"dtype": node.dtype}
    elif isinstance(node, Struct):
        body = {"struct": [_yaml(k, v) for k, v in node.fields.items()]}
    else:
        inner = _yaml(None, node.item)
        body = {
            "list": inner["dtype"]
            if isinstance(inner, dict) and set(inner) == {"dtype"}
            else (inner["struct"] if isinstance(inner, dict) and set(inner) == {"struct"} else inner)
        }
    if name is None:
        return body
    return {"name": name, **body}  # type: ignore[dict-item]


def card_features() -> list[dict]:
    """The row features in the dataset card's YAML form; needs no ``datasets`` install to write."""
    return [
        {"name": "__key__", "dtype": "string"},
        {"name": "__url__", "dtype": "string"},
        {"name": "jpg", "dtype": "image"},
        {"name": "txt", "dtype": "string"},
        _yaml("json", SAMPLE),
    ]


def _feature(node: Node) -> Any:
    from datasets import Value

    if isinstance(node, Leaf):
        return Value(node.dtype)
    if isinstance(node, Struct):
        return {k: _feature(v) for k, v in node.fields.items()}
    return [_feature(node.item)]


def features() -> Any:
    """``datasets.Features`` of a corpus row, for ``load_dataset("webdataset", data_files=..., features=...)``.

    Passing them makes loading independent of which samples come first (``datasets`` otherwise infers the
    types from the first five samples, and a field that is null in all five gets no type).
    """
    from datasets import Features, Image, Value

    return Features(
        {
            "__key__": Value("string"),
            "__url__": Value("string"),
            "jpg": Image(),
            "txt": Value("string"),
            "json": _feature(SAMPLE),
        }
    )


def type_name(node: Node) -> str:
    """How docs/FORMAT.md writes a field's type: ``float64 or null``, ``list of int64``, ``object``."""
    name = (
        node.dtype
        if isinstance(node, Leaf)
        else "object"
        if isinstance(node, Struct)
        else f"list of {type_name(node.item)}"
    )
    return f"{name} or null" if node.nullable else name


def field_types(node: Node = SAMPLE, prefix: str = "") -> dict[str, str]:
    """Every field's dotted path (list items as ``[]``) and type name, for the docs check."""
    out: dict[str, str] = {}
    if isinstance(node, Struct):
        for k, v in node.fields.items():
            p = f"{prefix}.{k}" if prefix else k
            out[p] = type_name(v)
            out.update(field_types(v, p))
    elif isinstance(node, List):
        out.update(field_types(node.item, prefix + "[]"))
    return out
