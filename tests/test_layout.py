"""The pipeline's stages import only the stages below them, and the rooms of models/ only the rooms
below theirs: every import, lazy ones included, runs one way, so no cycle can form."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lmzip"
# the stages, bottom up, as data flows: bytes -> tokens -> rows -> intervals -> bits -> blocks ->
# container; then what is built on them. A stage imports only the stages before it.
ORDER = ["errors", "settings", "malloc", "tokenize", "models", "coder", "layout", "mixing", "engine",
         "container", "fingerprint", "blocks", "workers", "api", "explain", "generate", "cli"]
# models/ bottom up: the predictor contract; the integer arithmetic and its numpy and torch
# backends; the native backend built on it; the integer predictor choosing among them; the float
# models; where integer models come from (GGUF files, the float GPT quantized); the registry
# (models/__init__.py); what `lmzip models` lists
MODEL_ROOMS = ["base", "legacy", "classical", "integer", "native", "integer_predictor", "float", "gguf",
               "__init__", "inventory"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(path: Path) -> set[tuple[str, str | None]]:
    """(absolute module, name) of every lmzip import in a file, at any depth of its code."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out |= {(target, alias.name) for alias in node.names if target.split(".")[0] == "lmzip"}
        elif isinstance(node, ast.Import):
            out |= {(alias.name, None) for alias in node.names if alias.name.startswith("lmzip")}
    return out


def imported_modules(path: Path) -> set[str]:
    """The lmzip modules a file imports (``from .x import y``: x, or x.y where y is a module)."""
    return {f"{target}.{name}" if f"{target}.{name}" in MODULES else target for target, name in imported(path)}


def part(module: str, depth: int) -> str:
    """The piece of a dotted name ``depth`` levels below lmzip (``__init__`` for the package itself)."""
    parts = module.split(".")
    return parts[depth] if len(parts) > depth else "__init__"


def test_no_stage_imports_a_stage_above_it():
    for path in PACKAGE.rglob("*.py"):
        stage = part(module_name(path), 1)
        if stage == "__init__":
            continue
        forbidden = set(ORDER[ORDER.index(stage) + 1 :])
        above = {part(m, 1) for m in imported_modules(path)} & forbidden
        assert not above, f"{path.relative_to(PACKAGE)} imports {above}"


def test_no_room_of_models_imports_a_room_above_it():
    for path in (PACKAGE / "models").rglob("*.py"):
        room = part(module_name(path), 2)
        forbidden = set(MODEL_ROOMS[MODEL_ROOMS.index(room) + 1 :])
        rooms = {part(m, 2) for m in imported_modules(path) if part(m, 1) == "models"}
        assert not rooms & forbidden, f"{path.relative_to(PACKAGE)} imports {rooms & forbidden}"


def test_no_import_cycle_among_the_modules():
    graph = {m: imported_modules(p) & set(MODULES) - {m} for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for following in sorted(graph[module]):
            assert following not in path, "import cycle: " + " -> ".join(path[path.index(following):] + [following])
            if following not in done:
                visit(following, path + [following])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])


def test_no_module_imports_a_private_name_of_another():
    for module, path in MODULES.items():
        for target, name in imported(path):
            if name and name.startswith("_") and not name.startswith("__"):
                assert f"{target}.{name}" in MODULES or target == module, f"{module} imports {name} from {target}"


def test_every_module_is_a_stage():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert modules == set(ORDER)
    rooms = {p.stem for p in (PACKAGE / "models").glob("*.py")} | {
        p.name for p in (PACKAGE / "models").iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(MODEL_ROOMS)


def test_the_checks_see_imports():
    assert {"engine", "container", "models", "tokenize"} <= {part(m, 1) for m in imported_modules(PACKAGE / "api.py")}
    predictor = imported_modules(PACKAGE / "models" / "integer_predictor.py")
    assert {"lmzip.models.native", "lmzip.models.integer.ops"} <= predictor  # a lazy import too
    assert "lmzip.models.native.toolchain" in imported_modules(PACKAGE / "models" / "native" / "check.py")
