"""The pipeline's stages import only the stages below them."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lmzip"
# stage -> the lmzip modules it may not import (the stages above it)
ABOVE = {"models": {"coder", "engine", "container", "api", "cli", "explain"},
         "tokenize": {"models", "coder", "engine", "container", "api", "cli", "explain"},
         "coder": {"engine", "container", "api", "cli", "explain"}}


def _imports(path: Path) -> set[str]:
    """First lmzip-level names a module imports (``from ..engine import x`` -> engine)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 0 and parts[0] == "lmzip":
                parts = parts[1:]
            elif node.level == 0:
                continue
            depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for lmzip/x.py, 1 for lmzip/models/x.py
            if node.level > depth + 1 or (node.level == 1 and depth == 1):
                continue  # a sibling inside models/
            names |= {parts[0]} if parts[0] else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lmzip.")}
    return names


def test_no_stage_imports_a_stage_above_it():
    for stage, forbidden in ABOVE.items():
        files = sorted((PACKAGE / stage).glob("*.py")) if (PACKAGE / stage).is_dir() else [PACKAGE / f"{stage}.py"]
        for path in files:
            assert not _imports(path) & forbidden, f"{path.relative_to(PACKAGE)} imports {_imports(path) & forbidden}"


def test_the_check_sees_imports():
    imports = _imports(PACKAGE / "api.py")
    assert {"engine", "container", "models", "tokenize"} <= imports
