"""Registered models pickled before `expansion_scorer.model` existed still load."""

import pickle

from expansion_scorer.model.calibration import Calibrator
from expansion_scorer.model.gam import SplineLogit
from expansion_scorer.model.parts import Head, Offset
from expansion_scorer.model.propensity import Choice, PropensityModel
from expansion_scorer.model.uplift import UpliftModel


def _as_if_saved_under(obj: object, new: str, old: str) -> object:
    """`obj` pickled as a model saved when its classes lived in `old` would be, then loaded."""
    text = pickle.dumps(obj, protocol=0)
    assert new.encode() in text
    return pickle.loads(text.replace(new.encode(), old.encode()))


def test_the_old_import_paths_unpickle_to_the_new_classes() -> None:
    head = Head("any", None, Offset("month", {1.0: 0.2}, 0.1))  # type: ignore[arg-type]
    loaded = _as_if_saved_under(
        head, "expansion_scorer.model.parts", "expansion_scorer.training.model"
    )
    assert isinstance(loaded, Head) and loaded.offset == head.offset
    for cls, new, old in [
        (PropensityModel, "expansion_scorer.model.propensity", "expansion_scorer.training.model"),
        (Choice, "expansion_scorer.model.propensity", "expansion_scorer.training.model"),
        (SplineLogit, "expansion_scorer.model.gam", "expansion_scorer.training.gam"),
        (Calibrator, "expansion_scorer.model.calibration", "expansion_scorer.training.calibration"),
        (UpliftModel, "expansion_scorer.model.uplift", "expansion_scorer.training.uplift"),
    ]:
        assert _as_if_saved_under(cls, new, old) is cls
