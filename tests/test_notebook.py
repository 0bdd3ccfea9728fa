"""analysis.ipynb executes top to bottom on the committed example run (small bootstrap)."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(monkeypatch):
    assert (ROOT / "reports" / "example" / "run" / "eval.csv").exists(), "the example run is not committed"
    monkeypatch.setenv("CEILING_ROOT", str(ROOT))
    monkeypatch.setenv("CEILING_NB_BOOT", "40")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "analysis.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError at the first failing cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # every cell ran, in order
    outputs = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    from ceiling.ingest import read_log

    rows = len(read_log(ROOT / "reports" / "example" / "run").frame)
    assert f", {rows} rows," in outputs  # the first cell read the example run whole
    assert "== ceiling ==" in outputs  # the FitReport summary was printed
    assert "note:" in outputs  # the real log's restart note was shown
