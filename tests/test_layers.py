"""The package's folders form layers (docs/ARCHITECTURE.md): a module imports only from its own folder or
from a lower layer, never upward, so the data flow reads from the folders and no two rooms loop."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"

# top to bottom; a folder imports only from its own rank or below (same rank: only its own folder)
LAYERS = [
    {"cli"},
    {"run"},
    {"intake", "stages", "caption", "report", "review", "demo"},
    {"corpus"},
    {"footage", "drawings", "clip"},
    {"io"},
    {"config", "taxonomy", "layout", "work", "__init__"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def room(module: str) -> str:
    """``pipeline.corpus.ledger`` -> ``corpus``; ``pipeline.work`` -> ``work``; ``pipeline`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> list[tuple[str, str, str]]:
    """(file, importing room, imported room) for every ``pipeline`` import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        here = room(".".join(rel.with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            found += [
                (str(rel), here, room(n)) for n in names if n == "pipeline" or n.startswith("pipeline.")
            ]
    return found


def test_every_room_of_the_package_has_a_layer():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py")}
    assert rooms <= set(RANK), f"folders or modules with no layer: {sorted(rooms - set(RANK))}"


def test_nothing_imports_a_folder_above_it_or_beside_it():
    bad = [
        f"{f}: {here} imports {there}"
        for f, here, there in imports()
        if there != here
        and (RANK[there] < RANK[here] or (RANK[there] == RANK[here] and RANK[here] != len(LAYERS) - 1))
    ]
    assert not bad, "\n".join(bad)


def test_the_check_sees_imports_across_rooms():
    """The rule above is not vacuous: the package really imports across rooms, and downward."""
    pairs = {(here, there) for _, here, there in imports() if here != there}
    assert ("run", "corpus") in pairs and ("stages", "footage") in pairs
