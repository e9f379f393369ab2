"""The package's layering: lower layers never import higher ones (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmseq"

# Each module (or package) with the rank of its layer; a module may import equal or lower ranks.
RANKS = {
    "mmseq.assets": 0,  # data and the scripts that make it
    "mmseq.errors": 0,
    "mmseq.config": 0,
    "mmseq.serialization": 0,
    "mmseq.terminal": 0,
    "mmseq.nn": 1,
    "mmseq.encoders": 2,
    "mmseq.decoder": 2,
    "mmseq.model": 3,
    "mmseq.precision": 3,
    "mmseq.vision": 3,
    "mmseq.generation": 4,
    "mmseq.whisper": 5,
    "mmseq.data": 5,
    "mmseq.checkpoint": 5,
    "mmseq.training": 6,
    "mmseq.transcription": 6,
    "mmseq.inference": 6,
    "mmseq.explain": 6,
    "mmseq.text": 5,  # importers, as mmseq.whisper
    "mmseq.writers": 7,
    "mmseq.loading": 7,
    "mmseq.cli": 8,
    "mmseq.jobs": 8,  # offline jobs on Lightning: products run by Trainer.predict
    "mmseq.demo": 8,
    "mmseq.serve": 8,
}


def _layer(module: str) -> str:
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in RANKS:
            return name
    raise AssertionError(f"{module} belongs to no layer: add it to RANKS")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmseq."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mmseq."))
    return found


def test_lower_layers_never_import_higher_ones() -> None:
    violations = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20
    for path in modules:
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        if module == "mmseq":
            continue  # the top level re-exports lazily
        own = RANKS[_layer(module)]
        for imported in _imports(path):
            if RANKS[_layer(imported)] > own:
                violations.append(f"{module} imports {imported}")
    assert not violations, violations
