"""The package's layers import downward only (an AST check of every import, lazy ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import crosspose

PACKAGE = Path(crosspose.__file__).parent

LAYERS: dict[str, int] = {
    "core": 0,
    "models": 1, "data": 1,
    "evaluation": 2,
    "training": 3,
    "inference": 4, "convert": 4,
    "experiments": 5, "benchmark": 5,
    "cli": 6, "testing": 6, "__init__": 6,
    "__main__": 7,
}
"""Sub-package (or top-level module) -> layer. A module may import its own sub-package and LOWER layers."""


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "crosspose" and len(parts) > 1 else None  # the root: metadata only


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            if node.module == "crosspose":
                found += [(node.lineno, f"crosspose.{alias.name}") for alias in node.names]
    return found


def test_every_subpackage_has_a_layer() -> None:
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in tests/test_layers.py"


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        source = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for line, module in _imports(path):
            target = _part(module)
            if target is None or target == source or target not in LAYERS:
                continue
            if LAYERS[target] >= LAYERS[source]:
                wrong.append(f"{rel}:{line} ({source}, layer {LAYERS[source]}) imports {module} "
                             f"({target}, layer {LAYERS[target]})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_layers_import_on_their_own() -> None:
    import crosspose.experiments
    import crosspose.training

    assert crosspose.experiments.__name__ == "crosspose.experiments"
