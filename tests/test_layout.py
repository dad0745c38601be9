"""The pipeline's stages import only the stages below them."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lmzip"
# the stages, bottom up, as data flows: bytes -> tokens -> rows -> intervals -> bits -> blocks ->
# container; then what is built on them. A stage imports only the stages before it.
ORDER = ["errors", "settings", "malloc", "tokenize", "models", "coder", "layout", "mixing", "engine",
         "container", "fingerprint", "blocks", "workers", "api", "explain", "generate", "cli"]
ABOVE = {stage: set(ORDER[i + 1 :]) for i, stage in enumerate(ORDER)}


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


def test_every_module_is_a_stage():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert modules == set(ORDER)


def test_no_stage_imports_a_private_name_of_another():
    for path in PACKAGE.rglob("*.py"):
        stage = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                target = node.module.split(".")[0]
                if target != stage and (node.level == 1 and path.parent == PACKAGE or node.level == 2):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{path.relative_to(PACKAGE)} imports {private} from {node.module}"


def test_the_check_sees_imports():
    imports = _imports(PACKAGE / "api.py")
    assert {"engine", "container", "models", "tokenize"} <= imports
