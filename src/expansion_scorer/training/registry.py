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
from expansion_scorer.errors import UserError
from expansion_scorer.tracking import CHALLENGER, CHAMPION

__all__ = [
    "CHALLENGER", "CHAMPION", "Contenders", "Decision", "alias_version", "assign_new_version",
    "contenders", "decide", "make_champion",
]  # fmt: skip


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


def make_champion(client: MlflowClient, name: str, version: str) -> None:
    """`version` becomes @champion; the challenger alias goes with it."""
    client.set_registered_model_alias(name, CHAMPION, version)
    client.delete_registered_model_alias(name, CHALLENGER)


@dataclass(frozen=True)
class Contenders:
    challenger: str
    champion: str | None
    settled: Decision | None = None
    """Set when there was no champion to compare with: the challenger is champion now."""

    @property
    def pair(self) -> tuple[str, str]:
        """(challenger, champion), when there is a champion to compare with."""
        assert self.champion is not None  # without one, `contenders` settled it
        return self.challenger, self.champion


def contenders(client: MlflowClient, name: str, how_to_train: str) -> Contenders:
    """@challenger and @champion of `name`, the gate's preamble for every model kind: no
    challenger stops in one line; no champion (or the same version) settles it by promotion."""
    challenger = alias_version(client, name, CHALLENGER)
    champion = alias_version(client, name, CHAMPION)
    if challenger is None:
        raise UserError(f"{name} has no @{CHALLENGER}; {how_to_train}")
    if champion is None or champion == challenger:
        make_champion(client, name, challenger)
        settled = Decision(True, "no champion to compare with: the challenger becomes champion")
        return Contenders(challenger, champion, settled)
    return Contenders(challenger, champion)


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
