"""`expansion`: generate, validate, train, score, deliver, monitor, demo. User errors: one line,
exit 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from expansion_scorer.config import Engine
from expansion_scorer.errors import UserError
from expansion_scorer.progress import QUIET

if TYPE_CHECKING:
    from expansion_scorer.config import Settings
    from expansion_scorer.data.sources import DataSource


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _engine(text: str) -> Engine:
    try:
        return Engine(text)
    except ValueError:
        names = ", ".join(e.value for e in Engine)
        raise argparse.ArgumentTypeError(f"{text!r} is not an engine; use one of {names}") from None


def _engine_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`--engine`, the same option on every command that reads data at scale."""
    parser.add_argument(
        "--engine",
        type=_engine,
        default=Engine.DUCKDB,
        help=f"where {what} are computed: duckdb, or spark (the active or a local session)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    """DATA_DIR and --sources, the same on every command that reads data."""
    parser.add_argument(
        "data_dir",
        nargs="?",
        help="folder of contract files (with --engine spark, also a URI such as"
        " hdfs://namenode/data or s3a://bucket/data); with --sources, the folder the mapping's"
        " relative paths start from, holding contract files for tables the mapping does not name",
    )
    parser.add_argument(
        "--sources",
        type=Path,
        default=os.environ.get("EXPANSION_SOURCES") or None,
        help="source mapping YAML: each contract table from a file glob or a SELECT"
        " (env EXPANSION_SOURCES; `expansion sources stripe segment salesforce` prints a start)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="expansion", description=__doc__)
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars, only the step lines (also EXPANSION_QUIET=1; bars show only on a"
        " terminal)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = sub.add_parser("generate", help="write a synthetic SaaS world in the data contract")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--accounts", type=_positive, default=1000)
    gen.add_argument("--months", type=_positive, default=30)
    gen.add_argument("--start", type=_date, default=date(2023, 1, 1))
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--activity", type=float, default=1.0, help="(0, 1]: thin the usage log for big worlds"
    )
    gen.add_argument(
        "--catalogue",
        choices=["default", "random"],
        default="default",
        help="random: product, plan and event names and each mechanism's strength from the seed",
    )
    gen.add_argument(
        "--structure",
        choices=["usage", "budget", "renewal"],
        default="usage",
        help="what drives expansion: usage (default), budget (weak usage signals), renewal",
    )
    gen.add_argument(
        "--program-start",
        type=_date,
        help="a world that answers an expansion program: write it up to this date, to be advanced"
        " week by week with --advance-to",
    )
    gen.add_argument(
        "--advance-to", type=_date, help="advance the program world in --out to this date"
    )
    gen.add_argument(
        "--touches",
        type=Path,
        help="with --advance-to: what CSMs did since the last advance (CSV or Parquet: account_id,"
        " touched_at; optional csm, motion, channel, outcome)",
    )
    gen.add_argument(
        "--strength", type=float, default=1.0, help="with --program-start: scale a touch's effect"
    )

    val = sub.add_parser("validate", help="check a data directory against the contract")
    _data_arguments(val)
    val.add_argument(
        "--features", type=Path, help="feature definitions whose event catalogue to check against"
    )

    tr = sub.add_parser(
        "train", help="backtest against baselines, log to MLflow, register the model"
    )
    _data_arguments(tr)
    tr.add_argument("--horizon-days", type=_positive)
    tr.add_argument("--train-until", type=_date)
    tr.add_argument("--config", type=Path, help="training YAML (default: built-in)")
    tr.add_argument("--features", type=Path, help="feature definitions YAML (default: built-in)")
    tr.add_argument("--trials", type=int, help="Optuna trials over LightGBM parameters (0: none)")
    tr.add_argument(
        "--promote", action="store_true", help="run the promotion gate straight after training"
    )
    _engine_argument(tr, "the training set")
    tr.add_argument(
        "--program",
        type=Path,
        help="with target: uplift, the weekly output root whose holdout history it learns from",
    )

    pr = sub.add_parser(
        "promote", help="compare @challenger with @champion on the latest folds; maybe promote"
    )
    _data_arguments(pr)
    pr.add_argument("--train-until", type=_date)
    pr.add_argument("--config", type=Path, help="training YAML (default: built-in)")
    pr.add_argument("--force", action="store_true", help="promote even if the gate refuses")
    pr.add_argument(
        "--program",
        type=Path,
        help="with target: uplift, the weekly output root both uplift models are refitted on",
    )

    sc = sub.add_parser("score", help="score, explain and rank eligible accounts as of a date")
    _data_arguments(sc)
    sc.add_argument("--as-of", type=_date, required=True)
    sc.add_argument("--model", default=None, help="model URI (default: the champion)")
    sc.add_argument("--out", type=Path, required=True)
    sc.add_argument("--config", type=Path, help="scoring YAML (default: built-in)")
    sc.add_argument("--features", type=Path, help="feature definitions YAML (default: built-in)")
    sc.add_argument(
        "--training-config",
        type=Path,
        help="the training YAML the model was trained with: its registered_model is the one"
        " scored at @champion (default: built-in, expansion-propensity)",
    )
    sc.add_argument(
        "--per-csm", action="store_true", help="also write per_csm/<csm>.csv, each CSM's capacity"
    )
    _engine_argument(sc, "features and scores")
    sc.add_argument(
        "--to",
        metavar="URL",
        help="also write the week's list into PostgreSQL: postgresql://USER@HOST:PORT/DB (password"
        " as ${ENV_VAR} in the URL, PGPASSWORD or ~/.pgpass)",
    )
    sc.add_argument(
        "--to-table",
        metavar="[SCHEMA.]TABLE",
        help="the table --to writes (default expansion_scores; created when absent)",
    )

    dl = sub.add_parser(
        "deliver",
        help="send the outbox's pending digests and chat messages (what `score` recorded), once",
    )
    dl.add_argument("out", type=Path, metavar="OUT", help="the output root `score` writes to")
    dl.add_argument(
        "--config", type=Path, help="the scoring YAML with the deliver: block the week used"
    )
    dl.add_argument(
        "--dry-run",
        action="store_true",
        help="write the pending messages to OUT/outbox-dry-run/ (.eml, .json); send nothing",
    )
    dl.add_argument(
        "--status", action="store_true", help="what went where: the outbox by week, channel, state"
    )
    dl.add_argument(
        "--resend-in-doubt",
        action="store_true",
        help="also send messages a killed run left in doubt (check they did not arrive first)",
    )

    mon = sub.add_parser(
        "monitor", help="drift since training and outcomes of past lists; whether to retrain"
    )
    _data_arguments(mon)
    mon.add_argument("--out", type=Path, required=True, help="the output root `score` writes to")
    mon.add_argument("--config", type=Path, help="scoring YAML (default: built-in)")
    mon.add_argument("--features", type=Path, help="feature definitions YAML (default: built-in)")
    _engine_argument(mon, "the training months' features and the outcomes")

    mea = sub.add_parser(
        "measure", help="the program's measured lift: listed against held-out accounts"
    )
    _data_arguments(mea)
    mea.add_argument(
        "--out", type=Path, required=True, help="the output root `score` writes to weekly"
    )
    mea.add_argument("--config", type=Path, help="scoring YAML (default: built-in)")
    mea.add_argument("--features", type=Path, help="feature definitions YAML (default: built-in)")
    mea.add_argument(
        "--plan",
        action="store_true",
        help="only the plan: the effect detectable after each of the next four quarters and the"
        " holdout fraction that detects program.detect within two, and with rank_by interleave"
        " or auto how long telling the two rankings apart takes (writes measure/plan.json)",
    )

    met = sub.add_parser("metrics", help="NRR and GRR per month and trailing 12 months")
    _data_arguments(met)
    met.add_argument(
        "--by", help="group by an accounts column: segment, industry, country, csm_owner"
    )
    met.add_argument("--out", type=Path, default=Path("metrics-out"))
    met.add_argument("--features", type=Path, help="feature definitions YAML (plan order)")

    retail = sub.add_parser(
        "online-retail",
        help="recipe: map the UCI Online Retail invoices into the contract, train, compare, score",
    )
    retail.add_argument(
        "--source", type=Path, default=Path("../shared/data/online-retail/online_retail.parquet")
    )
    retail.add_argument("--out", type=Path, default=Path("online-retail-out"))

    src = sub.add_parser(
        "sources", help="print shipped source mapping presets, joined, to copy and edit"
    )
    src.add_argument(
        "presets",
        nargs="+",
        metavar="PRESET",
        help="stripe or stripe-metered, segment, salesforce or hubspot, and for touches"
        " salesforce-activity or hubspot-engagements",
    )

    demo = sub.add_parser(
        "demo", help="generate, validate, train, run the program two quarters, measure and report"
    )
    demo.add_argument("--out", type=Path, default=Path("demo-out"))
    demo.add_argument("--accounts", type=_positive, default=1000)
    demo.add_argument("--seed", type=int, default=0)
    return parser


def _data(args: argparse.Namespace) -> DataSource:
    """The data a command reads: DATA_DIR's contract files, or the --sources mapping."""
    from expansion_scorer.data.sources import is_uri, load_sources

    if args.sources is not None:
        return load_sources(args.sources, None if args.data_dir is None else Path(args.data_dir))
    if args.data_dir is None:
        raise UserError(
            f"{args.command}: give DATA_DIR (a folder of contract files) or --sources"
            " sources.yaml (a source mapping)"
        )
    return str(args.data_dir) if is_uri(str(args.data_dir)) else Path(args.data_dir)


def _where(data: DataSource) -> str:
    from expansion_scorer.data.sources import Sources

    return str(data.path) if isinstance(data, Sources) else str(data)


def _sources(args: argparse.Namespace) -> None:
    from expansion_scorer.data.sources import preset_text

    sys.stdout.write(preset_text(args.presets))


def _program_world(args: argparse.Namespace) -> None:
    """`--program-start` writes a program world; `--advance-to` moves one on a week or more."""
    import pandas as pd

    from expansion_scorer.data.synthetic import SIMULATION_FILE, Catalogue, ProgramWorld

    try:
        if args.program_start is not None:
            world = ProgramWorld(
                args.out, args.program_start, n_accounts=args.accounts, seed=args.seed,
                start=args.start, months=args.months, activity=args.activity,
                strength=args.strength,
                catalogue=Catalogue.of(args.catalogue, args.seed, args.structure),
            )  # fmt: skip
        else:
            if not (args.out / SIMULATION_FILE).is_file():
                raise UserError(
                    f"{args.out}: no program world here; write one first with --program-start"
                )
            touches = None
            if args.touches is not None:
                if not args.touches.is_file():
                    raise UserError(f"--touches {args.touches}: no such file")
                read = pd.read_csv if args.touches.suffix == ".csv" else pd.read_parquet
                touches = read(args.touches)
                touches["touched_at"] = pd.to_datetime(touches["touched_at"])
            world = ProgramWorld.resume(args.out)
            world.advance(args.advance_to, touches)
    except (ValueError, KeyError) as exc:
        raise UserError(f"generate {args.out}: {exc}") from None
    world.save()
    print(f"wrote {args.out}: simulated until {world.simulated_until}, ends {world.end}")


def _generate(args: argparse.Namespace) -> None:
    from expansion_scorer.data.synthetic import Catalogue, generate_world

    started = time.perf_counter()
    if not 0 < args.activity <= 1:
        raise UserError(f"--activity {args.activity}: use a number above 0 and at most 1")
    if args.program_start is not None or args.advance_to is not None:
        if args.program_start is not None and args.advance_to is not None:
            raise UserError("--program-start and --advance-to: give one (start, then advance)")
        return _program_world(args)
    if args.touches is not None:
        raise UserError("--touches: only with --advance-to, for a program world")
    counts = generate_world(
        args.out,
        n_accounts=args.accounts,
        seed=args.seed,
        start=args.start,
        months=args.months,
        activity=args.activity,
        catalogue=Catalogue.of(args.catalogue, args.seed, args.structure),
    )
    took = time.perf_counter() - started
    summary = ", ".join(f"{name} {n:,}" for name, n in counts.items())
    print(f"wrote {args.out} in {took:.1f}s: {summary}")


def _validate(args: argparse.Namespace) -> None:
    from expansion_scorer.data.loading import open_world
    from expansion_scorer.data.validation import validate
    from expansion_scorer.features.catalogue import catalogue
    from expansion_scorer.settings import load_feature_set

    features = load_feature_set(args.features)
    data = _data(args)
    world = open_world(data)
    report = validate(world, features.events)
    for name, n in report.row_counts.items():
        print(f"{name}: {n:,} rows")
    found, unread = catalogue(world, features)
    print("the data names " + "; ".join(found))
    for warning in [*report.warnings, *unread]:
        print(f"warning: {warning}")
    print(f"{_where(data)}: valid")


def _train(args: argparse.Namespace) -> None:
    from expansion_scorer.jobs.train import say as say_training
    from expansion_scorer.jobs.train import train_job
    from expansion_scorer.settings import load_settings

    updates: dict[str, object] = {}
    if args.horizon_days is not None:
        updates["horizon_days"] = args.horizon_days
    if args.trials is not None:
        updates["tuning.trials"] = args.trials
    # validated like the config file, so --horizon-days 3 stops here, before any data is read
    settings = load_settings(args.features, args.config, serving=False, training_overrides=updates)
    cfg = settings.training
    assert cfg is not None
    config_text = args.config.read_text(encoding="utf-8") if args.config else None
    if cfg.target == "uplift":
        _train_uplift(args, settings, config_text)
        return
    if args.program is not None:
        raise UserError(
            "--program is read only with target: uplift (training config); drop it, or set"
            " target: uplift"
        )
    result = train_job(
        _data(args),
        cfg,
        settings.features,
        until=args.train_until,
        config_text=config_text,
        promote=args.promote,
        engine=args.engine,
    )
    say_training(result)


def _train_uplift(args: argparse.Namespace, settings: Settings, config_text: str | None) -> None:
    from expansion_scorer.jobs.uplift import say, uplift_job

    cfg = settings.training
    assert cfg is not None
    if args.engine is not Engine.DUCKDB:
        raise UserError("target: uplift trains on the duckdb engine only; drop --engine spark")
    if args.train_until is not None or args.promote or args.trials:
        raise UserError(
            "target: uplift takes no --train-until, --trials or --promote; it learns from every"
            " matured cohort of --program (promote with `expansion promote --config`)"
        )
    result = uplift_job(_data(args), args.program, cfg, settings.features, config_text)
    say(result)


def _promote(args: argparse.Namespace) -> None:
    from expansion_scorer.config import load_training_config
    from expansion_scorer.jobs.promote import promote_job, say

    cfg = load_training_config(args.config)
    if cfg.target == "uplift":
        from expansion_scorer.jobs.uplift import promote_uplift_job

        result = promote_uplift_job(_data(args), args.program, cfg, force=args.force)
    elif args.program is not None:
        raise UserError(
            "--program is read only with target: uplift (training config); drop it, or set"
            " target: uplift"
        )
    else:
        result = promote_job(_data(args), cfg, until=args.train_until, force=args.force)
    say(result, cfg.target)


def _score(args: argparse.Namespace) -> None:
    from expansion_scorer.jobs.score import say, score_job
    from expansion_scorer.serving.sink import open_sink
    from expansion_scorer.settings import load_settings

    settings = load_settings(args.features, args.training_config, args.config)
    assert settings.serving is not None
    if args.to_table and not args.to:
        raise UserError("--to-table names a table in the database --to gives; add --to URL")
    sink = open_sink(args.to, args.to_table) if args.to else None
    result = score_job(
        _data(args),
        args.as_of,
        args.out,
        settings.features,
        settings.serving,
        model_uri=args.model or settings.champion(),
        csm_files=args.per_csm,
        engine=args.engine,
        sink=sink,
    )
    say(result, args.as_of, sink)


def _deliver(args: argparse.Namespace) -> None:
    from expansion_scorer.config import load_serving_config
    from expansion_scorer.jobs.deliver import deliver_job, say_status, status
    from expansion_scorer.jobs.deliver import say as say_deliveries

    if args.status:
        summary, waiting = status(args.out)
        if summary.empty:
            print(f"{args.out}: no deliveries recorded")
            return
        say_status(summary, waiting)
        return
    serving = load_serving_config(args.config)
    if serving.deliver is None and not args.dry_run:
        raise UserError(
            f"deliver: {args.config or 'the built-in serving config'} has no deliver: block;"
            " pass the --config the week was scored with"
        )
    result = deliver_job(args.out, serving.deliver, args.dry_run, args.resend_in_doubt)
    if not result.sent and not result.files and not result.problems:
        print(f"{args.out}: nothing to deliver")
    say_deliveries(None, result)


def _measure(args: argparse.Namespace) -> None:
    from expansion_scorer.jobs.measure import measure_job, plan_job, say, say_plan
    from expansion_scorer.settings import load_settings

    settings = load_settings(args.features, training=False, serving=args.config)
    assert settings.serving is not None
    if args.plan:
        planned = plan_job(_data(args), args.out, settings.features, settings.serving)
        say_plan(planned.plan)
        for path in planned.files:
            print(f"  {path}")
        return
    result = measure_job(_data(args), args.out, settings.features, settings.serving)
    say(result)


def _monitor(args: argparse.Namespace) -> None:
    from expansion_scorer.jobs.monitor import monitor_job, say
    from expansion_scorer.settings import load_settings

    settings = load_settings(args.features, training=False, serving=args.config)
    serving = settings.serving
    assert serving is not None
    result = monitor_job(_data(args), args.out, settings.features, serving, engine=args.engine)
    say(result, serving.monitor)


def _metrics(args: argparse.Namespace) -> None:
    from expansion_scorer.jobs.metrics import metrics_job, say
    from expansion_scorer.settings import load_feature_set

    result = metrics_job(_data(args), args.out, load_feature_set(args.features), by=args.by)
    say(result, args.by)


def _online_retail(args: argparse.Namespace) -> None:
    from expansion_scorer.jobs.recipes import online_retail_job, say

    result = online_retail_job(args.source, args.out)
    say(result, args.out)


def _demo(args: argparse.Namespace) -> None:
    from expansion_scorer.jobs.demo import demo_job, say

    say(demo_job(args.out, args.accounts, args.seed, say=print))


COMMANDS = {
    "generate": _generate,
    "validate": _validate,
    "train": _train,
    "promote": _promote,
    "score": _score,
    "metrics": _metrics,
    "online-retail": _online_retail,
    "demo": _demo,
    "sources": _sources,
    "monitor": _monitor,
    "measure": _measure,
    "deliver": _deliver,
}


def _quiet_libraries() -> None:
    """Keep the console for what the operator needs: MLflow and SHAP chatter goes."""
    for name in ("mlflow", "alembic", "shap"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(mlflow|shap)\b")
    # pyspark warns about pandas 3 on every session; the engine's parity test is the check
    warnings.filterwarnings("ignore", message=r"PySpark does not yet fully support pandas")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")


def share_cores_politely() -> None:
    """OpenMP threads that find no work sleep instead of spinning.

    LightGBM's threads otherwise busy-wait at every barrier; when another process holds a
    core (a shared machine, a second job), each boosting round then waits for a descheduled
    thread, and rounds ran over 10x slower here. Read when the OpenMP runtime loads, so this
    runs before LightGBM is imported; an operator's own setting wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    share_cores_politely()
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    if args.quiet:
        os.environ[QUIET] = "1"
    try:
        COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
