"""predictions.csv / `ceiling predict --at` against the fit object's own numbers and the rules for budgets and
flags, written out by hand on one small exponential fit against steps (x from 0)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ceiling.errors import CeilingError
from ceiling.fit import fit_curve
from ceiling.report.predictions import COLUMNS, default_budgets, markdown_table, parse_budgets, predictions
from ceiling.report.results import as_fits


@pytest.fixture  # per test (cheap): mutation testing attributes a fixture's calls to each test using it
def fitted():
    x = np.arange(0, 200, 5.0)
    y = 0.7 + (0.1 - 0.7) * np.exp(-x / 40) + np.random.default_rng(0).normal(0, 0.01, x.size)
    fit = fit_curve(x, y, form="exponential", n_boot=50, exclude_frac=0.0, x_label="step")
    return fit, as_fits({"schema_version": 1, "run": "r", "ceiling": fit.to_dict()})


def test_default_budgets_span_first_observed_to_ten_times_the_last(fitted):
    fit, fits = fitted
    assert fit.data["x_min"] == 0.0 and fit.data["x_max"] == 195.0
    np.testing.assert_allclose(default_budgets(fits), np.linspace(0.0, 1950.0, 8))  # from 0: linear spacing
    np.testing.assert_allclose(default_budgets(fits, n=3), [0.0, 975.0, 1950.0])
    d = fit.to_dict()
    d["data"]["x_min"] = 5.0  # a first positive x: log spacing
    np.testing.assert_allclose(default_budgets(as_fits({"schema_version": 1, "ceiling": d}), n=3),
                               [5.0, np.sqrt(5.0 * 1950.0), 1950.0])


def test_predictions_are_the_fits_numbers_with_flags_by_hand(fitted):
    fit, fits = fitted
    budgets = [0.0, 50.0, 195.0, 292.5]
    df = predictions(fits, budgets)
    assert list(df.columns) == COLUMNS and list(df["budget"]) == budgets and set(df["x"]) == {"step"}
    np.testing.assert_allclose(df["prediction"], fit.predict(budgets))
    _, lo, hi = fit.predict(budgets, band="confidence")
    np.testing.assert_allclose(df[["conf_low", "conf_high"]].to_numpy().T, [lo, hi])
    assert list(df["beyond_validated"]) == [False, False, False, True]  # the first and last fitted steps are in
    assert list(df["note"][:3]) == ["", "", ""]
    assert df["note"][3].startswith("extrapolated 1.5x beyond the largest fitted step (195)")
    assert "no extrapolation backtest" in df["note"][3]
    defaults = predictions(fits)  # no budgets: the default ones
    np.testing.assert_allclose(defaults["budget"], default_budgets(fits))


def test_predictions_refuse_without_a_ceiling_and_bad_budgets(fitted):
    _, fits = fitted
    with pytest.raises(CeilingError, match="no ceiling fit to predict from \\(too short a run\\)"):
        predictions({"schema_version": 1, "ceiling": {"kind": "not_available", "reason": "too short a run"}}, [1.0])
    with pytest.raises(CeilingError, match="finite"):
        predictions(fits, [1.0, np.nan])
    with pytest.raises(CeilingError, match="no observed compute range"):
        default_budgets({"schema_version": 1})


def test_parse_budgets_and_markdown():
    assert parse_budgets("0, 1e15,,3e15") == [0.0, 1e15, 3e15]
    for bad in ("-1", "x", "inf", " , "):
        with pytest.raises(CeilingError, match="--at"):
            parse_budgets(bad)
    empty = pd.DataFrame(columns=COLUMNS)
    assert markdown_table(empty).startswith("| compute budget | predicted verified reward |")
