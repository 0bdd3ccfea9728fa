"""`ceiling sweep --engine ray`: two runs of the smoke sweep on a local Ray cluster give the local engine's
results (same seeds), and finished runs are not redone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMING = ("speed/", "compute/wall_seconds")  # wall-clock figures: the only numbers allowed to differ


def results(run: Path) -> dict:
    """What a run directory concludes, without its wall-clock figures (and the fit's fingerprint of them)."""
    metrics = [{k: v for k, v in json.loads(line).items() if not k.startswith(TIMING)}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    fits = json.loads((run / "fits.json").read_text())
    fits["meta"].pop("fingerprint")  # a hash of all frame values, wall seconds included
    return {"metrics": metrics, "eval": (run / "eval.csv").read_text(), "fits": fits}


@pytest.mark.slow  # four smoke runs (two local, two as Ray tasks) plus a Ray cluster start: ~40 s on 2 cores
def test_ray_sweep_equals_local_engine_and_skips_finished_runs(tmp_path):
    ray = pytest.importorskip("ray", reason='the ray extra is not installed (pip install -e ".[ray]")')
    from ceiling.engines.ray import RayResources, run_cells_ray
    from ceiling.sweep import load_sweep, run_cells

    config = load_sweep(REPO / "configs" / "sweep_smoke.json")
    cells = config.cells[:2]
    local = run_cells(config, tmp_path / "local", jobs=1, threads=1, cells=cells)
    assert [r.status for r in local] == ["ran", "ran"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        seen = []
        remote = run_cells_ray(config, tmp_path / "ray", RayResources(cpus_per_run=1), cells=cells,
                               progress=lambda r, done, total: seen.append((r.cell, r.status, done, total)))
        assert [r.status for r in remote] == ["ran", "ran"], [r.error for r in remote]
        assert sorted(name for name, *_ in seen) == sorted(c.name for c in cells)
        assert [(status, done, total) for _, status, done, total in seen] == [("ran", 1, 2), ("ran", 2, 2)]
        for c in cells:
            a = results(tmp_path / "local" / config.name / c.name)
            b = results(tmp_path / "ray" / config.name / c.name)
            assert a == b, c.name
            record = json.loads((tmp_path / "ray" / config.name / c.name / "sweep_cell.json").read_text())
            assert record["status"] == "complete"
        again = run_cells_ray(config, tmp_path / "ray", RayResources(cpus_per_run=1), cells=cells)
        assert [r.status for r in again] == ["done", "done"]  # finished runs are not redone
    finally:
        ray.shutdown()
