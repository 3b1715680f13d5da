"""The two options every benchmark takes: `--smoke` and `--out`.

`--smoke` runs the whole script at tiny sizes in seconds; its figures mean nothing, but the test
suite runs every benchmark so (tests/test_bench.py), so none stops working unseen. `--out` is
where a benchmark writes its worlds, stores and outputs: bench/out/NAME unless given.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "out"


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
