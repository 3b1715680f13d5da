"""Benchmark: what reading through a source mapping costs against reading contract files.

Generates (once, cached under bench/out/) a world in the data contract and times, each run in a
fresh process, building the training set exactly as `expansion train` does (open, validate,
eligibility, the movement ledger, every feature and the labels at every month start) three
ways over the same files:

- `direct`: the data directory (`expansion train DATA_DIR`);
- `files`: a mapping whose every table is a `files:` glob with a column map (views);
- `sql`: a mapping whose every table is a `sql:` SELECT over the same files (computed once into
  a temp table each);

and, with `--presets`, the same world written out as Stripe, Segment and Salesforce exports and
read through the shipped presets (other files, so its figure is for information: the Stripe
history is rebuilt from invoice lines and Segment's accounts resolved through `groups`).
Runs are interleaved; medians and the ratio to `direct` are printed, of CPU time (user +
system, every DuckDB thread) as well as wall time, since on a shared machine the wall time
measures the neighbours as much as the code.

    .venv/bin/python bench/sources_read.py [--accounts 3000] [--months 24] [--activity 0.25]
        [--repeats 5] [--presets] [--out DIR] [--smoke]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from expansion_scorer.data.contract import TABLES

import _args

REPO = Path(__file__).resolve().parents[1]


def _mappings(world: Path) -> None:
    """`files.yaml` and `sql.yaml` beside the world's files, naming every table it has."""
    files, sql = ["tables:"], ["tables:"]
    for name, spec in TABLES.items():
        path = world / f"{name}.parquet"
        if not path.exists():
            continue
        columns = ", ".join(f"{c.name}: {c.name}" for c in spec.columns if c.name != "crm_id")
        files += [f"  {name}:", f"    files: {path.name}"]
        if name != "accounts":  # a column map on every table but one: both kinds of entry
            files.append(f"    columns: {{{columns}}}")
        sql += [f"  {name}:", f"    sql: SELECT * FROM read_parquet('{path.name}')"]
    (world / "files.yaml").write_text("\n".join(files) + "\n")
    (world / "sql.yaml").write_text("\n".join(sql) + "\n")


def _exports(world: Path, end: date) -> Path:
    sys.path.insert(0, str(REPO))  # the vendor writers are the tests' own
    from expansion_scorer.data.sources import preset_text
    from tests.data.vendors import write_all

    out = world.parent / f"{world.name}-exports"
    if not (out / "sources.yaml").exists():
        shutil.rmtree(out, ignore_errors=True)
        write_all(world, out, end)
        for table in ("support_tickets", "nps_responses"):
            shutil.copy(world / f"{table}.parquet", out / f"{table}.parquet")
        (out / "sources.yaml").write_text(preset_text(["stripe", "segment", "salesforce"]))
    return out


def one(mode: str, world: Path, exports: Path | None) -> None:
    """A single timed run, in this process; prints one JSON line."""
    from expansion_scorer.config import load_training_config
    from expansion_scorer.data.sources import load_sources
    from expansion_scorer.settings import load_feature_set
    from expansion_scorer.training.dataset import load_world, training_frame

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    started, cpu_started = time.perf_counter(), cpu()
    if mode == "direct":
        data: object = world
    elif mode == "presets":
        assert exports is not None
        data = load_sources(exports / "sources.yaml", exports)
    else:
        data = load_sources(world / f"{mode}.yaml")
    loaded = load_world(data, cutoff=None)  # type: ignore[arg-type]
    opened = time.perf_counter() - started
    frame = training_frame(loaded, load_feature_set(), load_training_config(), None)
    took, cpu_took = time.perf_counter() - started, cpu() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(json.dumps({"mode": mode, "seconds": took, "cpu": cpu_took, "open_validate": opened,
                      "rows": len(frame), "label_sum": int(frame["label"].sum()),
                      "peak_gib": peak}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--activity", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--presets", action="store_true", help="also the vendor exports")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    smoke = {"accounts": 40, "months": 12, "repeats": 1, "presets": True}
    args = _args.parse(parser, "sources_read", smoke)

    world = args.out / f"world-{args.accounts}-{args.months}-{args.activity}"
    start = date(2023, 1, 1)
    end = date(start.year + (args.months // 12), 1 + args.months % 12, 1)
    exports = world.parent / f"{world.name}-exports" if args.presets else None
    if args.one:
        one(args.one, world, exports)
        return
    if not (world / "truth.parquet").exists():
        from expansion_scorer.data.synthetic import generate_world

        counts = generate_world(world, n_accounts=args.accounts, seed=1, start=start,
                                months=args.months, activity=args.activity)  # fmt: skip
        print(f"generated {counts['usage_events']:,} usage events")
    _mappings(world)
    if args.presets:
        _exports(world, end)
    modes = ["direct", "files", "sql"] + (["presets"] if args.presets else [])
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            command = [
                sys.executable,
                __file__,
                "--one",
                mode,
                "--accounts",
                str(args.accounts),
                "--months",
                str(args.months),
                "--activity",
                str(args.activity),
                "--out",
                str(args.out),
            ]
            command += ["--presets"] if args.presets else []  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = {m: {int(r["rows"]) for r in rs} | {int(r["label_sum"]) for r in rs}
            for m, rs in runs.items()}  # fmt: skip
    base = statistics.median(r["seconds"] for r in runs["direct"])
    base_cpu = statistics.median(r["cpu"] for r in runs["direct"])
    print(f"{args.accounts:,} accounts, {args.months} months, activity {args.activity};"
          f" training set of {runs['direct'][0]['rows']:,} rows; {args.repeats} runs each,"
          " interleaved, each a fresh process")  # fmt: skip
    print("| reading | CPU s (user + sys) | median | x direct | wall s | median | x direct"
          " | open + validate, wall s | peak |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, rs in runs.items():
        cpus = ", ".join(f"{r['cpu']:.1f}" for r in rs)
        times = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        median = statistics.median(r["seconds"] for r in rs)
        median_cpu = statistics.median(r["cpu"] for r in rs)
        opened = statistics.median(r["open_validate"] for r in rs)
        peak = max(r["peak_gib"] for r in rs)
        print(
            f"| {mode} | {cpus} | {median_cpu:.1f} | {median_cpu / base_cpu:.2f} | {times} |"
            f" {median:.1f} | {median / base:.2f} | {opened:.1f} | {peak:.2f} GiB |"
        )
    same = all(v == rows["direct"] for v in rows.values())
    print("same rows and labels in every mode:", same)


if __name__ == "__main__":
    main()
