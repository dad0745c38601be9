"""docs/prediction-is-compression.ipynb runs top to bottom, headless, as a student would run it."""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import make_notebook  # noqa: E402


def test_the_notebook_runs_without_an_error_in_under_a_minute():
    start = time.perf_counter()
    notebook = make_notebook.run(make_notebook.build(), timeout=120)  # raises CellExecutionError on any error
    assert time.perf_counter() - start < 60
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # the interval, the ladder, the loss area
    assert not any(o.get("output_type") == "error" for o in outputs)


def test_the_committed_notebook_is_the_one_the_cells_make():
    import nbformat

    committed = nbformat.read(make_notebook.NOTEBOOK, as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in make_notebook.build().cells]
