"""Where registered models saved before `expansion_scorer.model` existed find the gam's classes.

MLflow pickles a model by its classes' import paths; this module keeps the old path working.
"""

from expansion_scorer.model.gam import SplineLogit, _Term

__all__ = ["SplineLogit", "_Term"]
