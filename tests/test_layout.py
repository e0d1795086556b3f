"""The package is laid out by what it models, and imports flow one way: chapters -> systems ->
foundations; no model imports the book's tooling."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mmmlib"
FOUNDATIONS = {"data", "transforms", "metrics", "optimize", "runtime", "workers", "plots", "files", "inference"}
SYSTEMS = {"worlds", "bayes", "funnel", "deepcausal", "twins", "tvc", "scoreboard", "lift"}
# the other systems a system may use (besides foundations and itself), and why
USES = {
    "bayes": {"worlds"},  # Chapter 1 fits Chapter 0's worlds
    "deepcausal": {"bayes"},  # Chapter 3 sets Chapter 1's model beside its own
    "scoreboard": {"worlds", "bayes", "deepcausal", "funnel"},  # Chapter 6 races them
    "lift": {"bayes", "scoreboard", "worlds"},  # Chapter 8 calibrates Chapter 1's model on Chapter 6's worlds
}


def part_of(module: str) -> str:
    """``mmmlib.bayes.model`` -> ``bayes``; ``mmmlib.data`` -> ``data``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmmlib"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mmmlib")}
    return out


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT.parent).with_suffix("").parts): p for p in ROOT.rglob("*.py")}


def test_every_module_belongs_to_a_foundation_a_system_the_command_or_the_book():
    known = FOUNDATIONS | SYSTEMS | {"cli", "book", "__init__", "__main__"}
    for name in modules():
        assert part_of(name) in known or name == "mmmlib.__init__", name


def test_imports_flow_from_systems_to_foundations_and_never_into_the_book():
    for name, path in modules().items():
        mine = part_of(name)
        for target in imports_of(path):
            theirs = part_of(target)
            if theirs in ("", mine) or mine in ("book", "cli", "__main__"):
                continue  # the package itself, within a part, or the command/book tooling on top
            assert theirs != "book", f"{name} imports the book's tooling ({target})"
            if mine in FOUNDATIONS:
                assert theirs in FOUNDATIONS, f"foundation {name} imports {target}"
            elif mine in SYSTEMS:
                assert theirs in FOUNDATIONS or theirs in USES.get(mine, set()), f"{name} imports {target}"


def test_each_chapter_imports_its_own_system():
    import json

    expected = {"00": "worlds", "01": "bayes", "02": "funnel", "03": "deepcausal", "04": "twins", "05": "tvc",
                "06": "scoreboard", "07": "bayes", "08": "lift", "90": "bayes"}
    for nb in sorted((ROOT.parent / "chapters").glob("[0-9][0-9]_*.ipynb")):
        code = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert f"mmmlib.{expected[nb.name[:2]]}" in code, nb.name
