"""Models out of MLflow: a registered version or run artifact, checked for its kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import mlflow
from mlflow.exceptions import MlflowException

from expansion_scorer.config import ServingConfig
from expansion_scorer.errors import UserError
from expansion_scorer.model.propensity import PropensityModel
from expansion_scorer.model.uplift import UpliftModel
from expansion_scorer.tracking import ModelRef, configure, resolve

M = TypeVar("M", PropensityModel, UpliftModel)


def _load(
    uri: str, kind: type[M], cannot: Callable[[str], str], wrong: str
) -> tuple[M, ModelRef | None]:
    """The `kind` model at `uri` and the registered version it points to (None outside the
    registry); `cannot(the loader's first line)` and `wrong` say why there is none."""
    client = configure()
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise UserError(cannot(str(exc).splitlines()[0])) from None
    model = loaded.unwrap_python_model()
    if not isinstance(model, kind):
        raise UserError(wrong)
    return model, resolve(client, uri)


def load_versioned(uri: str) -> tuple[PropensityModel, ModelRef | None]:
    """The wrapped model and the registered version the URI points to (None outside the
    registry)."""
    return _load(
        uri,
        PropensityModel,
        lambda first: (
            f"model {uri} cannot be loaded ({first[:200]}); run `expansion train`"
            " first or pass --model"
        ),
        f"model {uri} is not an expansion-propensity model",
    )


def load_model(uri: str) -> tuple[PropensityModel, str]:
    """The wrapped model and how lists name it ('expansion-propensity v3'; other URIs as
    given)."""
    model, ref = load_versioned(uri)
    return model, ref.label if ref is not None else uri


def load_uplift(serving: ServingConfig) -> tuple[UpliftModel | None, str]:
    """When a list may be built by uplift (`rank_by: uplift`, or uplift in `compare`), the
    uplift model and its readable version; otherwise none."""
    if not serving.uses_uplift:
        return None, ""
    uri = serving.uplift_uri
    fix = (
        "train one with `expansion train DATA --config <a config with target: uplift> --program"
        " OUT`, or set rank_by: score"
    )
    said = "rank_by: uplift" if serving.rank_by == "uplift" else f"rank_by: {serving.rank_by}"
    if serving.rank_by != "uplift":
        said += " compares uplift"
    model, ref = _load(
        uri,
        UpliftModel,
        lambda first: (
            f"serving config: {said}, but no uplift model loads from {uri} ({first[:160]}); {fix}"
        ),
        f"serving config: uplift_model {uri} is not an uplift model; {fix}",
    )
    return model, ref.label if ref is not None else uri
