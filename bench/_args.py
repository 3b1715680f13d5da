"""The two options every benchmark takes: `--smoke` and `--out`.

`--smoke` runs the whole script at tiny sizes in seconds (and where it trains a model, with
`SMOKE_TRAINING`'s few rounds and one fold); its figures mean nothing, but the test suite runs
every benchmark so (tests/test_bench.py), so none stops working unseen. `--out` is
where a benchmark writes its worlds, stores and outputs: bench/out/NAME unless given.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).parent / "out"

SMOKE_TRAINING: dict[str, Any] = {
    "lightgbm.n_estimators": 30,
    "lightgbm.min_child_samples": 10,
    "learning.strengths": [{"leaves": 3, "rows_per_leaf": 0.3}],
    "learning.gam.l2": [1.0],
    "backtest.folds": 1,
}
"""What a smoke run's training changes of the shipped config: every learner, calibration and
check still runs, on one fold, one strength, one GAM penalty and a few boosting rounds."""


def parse(parser: argparse.ArgumentParser, name: str, smoke: dict[str, Any]) -> argparse.Namespace:
    """Add `--smoke` and `--out` to `parser` and parse; with `--smoke`, `smoke`'s values
    replace the sizes given or defaulted (an option's destination name to its tiny value)."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, a few seconds: checks the benchmark still runs (figures mean nothing)",
    )
    parser.add_argument(
        "--out", type=Path, default=OUT / name, help=f"where it writes (default bench/out/{name})"
    )
    args = parser.parse_args()
    unknown = set(smoke) - set(vars(args))
    assert not unknown, f"--smoke sets options {name} does not have: {sorted(unknown)}"
    if args.smoke:
        vars(args).update(smoke)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def smoke_training(out: Path, **updates: Any) -> Path:
    """The shipped training config with `SMOKE_TRAINING` (and `updates`, dotted keys spelt with
    `__`) applied, written under `out` for a smoke run's `expansion train --config`."""
    from expansion_scorer.config import load_training_config, override

    extra = {key.replace("__", "."): value for key, value in updates.items()}
    cfg = override(load_training_config(), {**SMOKE_TRAINING, **extra}, "smoke sizes")
    path = out / "training-smoke.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path
