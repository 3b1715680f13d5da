"""Where registered models saved before `expansion_scorer.model` existed find their classes.

MLflow pickles a model by its classes' import paths; this module keeps the old path working.
"""

from expansion_scorer.model.parts import Head, Offset
from expansion_scorer.model.propensity import Choice, PropensityModel

__all__ = ["Choice", "Head", "Offset", "PropensityModel"]
