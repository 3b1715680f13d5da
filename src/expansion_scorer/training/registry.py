"""Registry aliases and the promotion gate: `champion` moves only for a better challenger.

The first registered model becomes the champion; later ones become the challenger. The gate
refits both models' recipes (their logged, resolved training configs) on the same latest
backtest folds of the same data, and moves `champion` when the challenger's lift at capacity
beats the champion's by the configured margin and its calibration error is no worse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from expansion_scorer.config import GateConfig
from expansion_scorer.tracking import CHALLENGER, CHAMPION

__all__ = ["CHALLENGER", "CHAMPION", "Decision", "alias_version", "assign_new_version", "decide"]


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def assign_new_version(client: MlflowClient, name: str, version: str) -> str:
    """`champion` for the first model, `challenger` for every later one; the alias given."""
    alias = CHALLENGER if alias_version(client, name, CHAMPION) is not None else CHAMPION
    client.set_registered_model_alias(name, alias, version)
    return alias


@dataclass
class Decision:
    promote: bool
    reason: str
    forced: bool = False
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)


def decide(
    challenger: dict[str, float], champion: dict[str, float], gate: GateConfig, force: bool
) -> Decision:
    """The gate's rule on pooled metrics of the same folds; `force` overrides a refusal."""
    lift_gain = challenger["lift_at_capacity"] - champion["lift_at_capacity"]
    ece_loss = challenger["ece"] - champion["ece"]
    better = lift_gain > gate.lift_margin
    calibrated = ece_loss <= gate.ece_tolerance
    numbers = (
        f"lift at capacity {challenger['lift_at_capacity']:.3f} vs"
        f" {champion['lift_at_capacity']:.3f} ({lift_gain:+.3f}, margin {gate.lift_margin}),"
        f" ECE {challenger['ece']:.4f} vs {champion['ece']:.4f}"
        f" ({ece_loss:+.4f}, tolerance {gate.ece_tolerance})"
    )
    if better and calibrated:
        return Decision(True, f"challenger is better: {numbers}", False, challenger, champion)
    why = "lift at capacity not higher by the margin" if not better else "calibration worse"
    if force:
        return Decision(
            True, f"forced despite the gate ({why}): {numbers}", True, challenger, champion
        )
    return Decision(False, f"refused ({why}): {numbers}", False, challenger, champion)
