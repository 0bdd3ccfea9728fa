"""ceiling: measure and forecast the limits of RLVR for language models.

Data flows one way: tasks -> models -> rl -> evaluate -> fit -> report; the CLI and the notebook sit on top.
"""
from ceiling.errors import CeilingError

__version__ = "0.1.0"
__all__ = ["CeilingError", "__version__"]
