"""Fits with honest intervals: ceilings, the entropy law, the KL collapse threshold, across-run regression.

Depends only on numpy / scipy / pandas / statsmodels and ceiling.frame / errors / io. See SCHEMA.md for
fits.json.
"""
from ceiling.fit.across import AcrossRunsFit, fit_across_runs
from ceiling.fit.collapse import CollapseFit, fit_collapse
from ceiling.fit.common import SCHEMA_VERSION, NotAvailable
from ceiling.fit.diagnosis import RunDiagnosis, diagnose
from ceiling.fit.curve import (
    DEFAULT_EXCLUDE_FRAC,
    DEFAULT_MAX_CI_WIDTH,
    DEFAULT_MIN_PROGRESS,
    CurveFit,
    CurveFitter,
    FormComparison,
    backtest,
    compare_forms,
    fit_curve,
)
from ceiling.fit.entropy import EntropyLawFit, fit_entropy_law
from ceiling.fit.fitreport import (
    FitReport,
    base_measures,
    fit_frame,
    from_dict,
    load_fits,
    save_fits,
    section_from_dict,
)
from ceiling.fit.forms import FORMS

__all__ = [
                               "DEFAULT_EXCLUDE_FRAC",
                               "DEFAULT_MAX_CI_WIDTH",
                               "DEFAULT_MIN_PROGRESS",
                               "FORMS",
                               "SCHEMA_VERSION",
                               "AcrossRunsFit",
                               "CollapseFit",
                               "CurveFit",
                               "CurveFitter",
                               "EntropyLawFit",
                               "FitReport",
                               "FormComparison",
                               "NotAvailable",
                               "RunDiagnosis",
                               "backtest",
                               "diagnose",
                               "base_measures",
                               "compare_forms",
                               "fit_across_runs",
                               "fit_collapse",
                               "fit_curve",
                               "fit_entropy_law",
                               "fit_frame",
                               "from_dict",
                               "load_fits",
                               "save_fits",
                               "section_from_dict",
]
