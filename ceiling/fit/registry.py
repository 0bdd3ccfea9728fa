"""The sections of fits.json, in one place: their names (in report order), titles and result classes.

Adding a section: a module with its result class (`kind`, `title`, `to_dict`, `from_dict`, `summary`,
`headline`, `rows`, `warnings`) and its line here; `fit_frame` calls its builder.
"""
from __future__ import annotations

from ceiling.fit.across import AcrossRunsFit
from ceiling.fit.collapse import CollapseFit
from ceiling.fit.common import SECTION_TITLES
from ceiling.fit.curve import CurveFit
from ceiling.fit.diagnosis import RunDiagnosis
from ceiling.fit.entropy import EntropyLawFit
from ceiling.fit.families import FamilyCeilings

# section name -> (the `kind` its stored dict carries, the result class that rebuilds it)
REGISTRY = {
    "diagnosis": ("diagnosis", RunDiagnosis),
    "ceiling": ("curve", CurveFit),
    "family_ceilings": ("family_ceilings", FamilyCeilings),
    "entropy_law": ("entropy_law", EntropyLawFit),
    "collapse": ("collapse", CollapseFit),
    "across_runs": ("across_runs", AcrossRunsFit),
}
SECTIONS = tuple(REGISTRY)
SECTION_KINDS = {kind: cls for kind, cls in REGISTRY.values()}
REQUIRED_SECTIONS = ("ceiling", "entropy_law", "collapse")  # always in fits.json (maybe not_available)

__all__ = ["REGISTRY", "REQUIRED_SECTIONS", "SECTIONS", "SECTION_KINDS", "SECTION_TITLES"]
