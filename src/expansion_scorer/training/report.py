"""What a training run shows a data scientist: the fold table, charts and the model card.

Functions here turn results into text or write a chart to a given path; the job decides where
they go (the console, the MLflow run).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from expansion_scorer.model.propensity import Choice, PropensityModel, contributions
from expansion_scorer.training import baselines
from expansion_scorer.training.backtest import KINDS, MODEL, TRUTH_COLUMN, UNCALIBRATED, Backtest
from expansion_scorer.training.metrics import reliability

LABELS = {
    MODEL: "model",
    UNCALIBRATED: "model, uncalibrated",
    "rule": "rule",
    "logistic": "logistic",
    "recent": "expanded <180d",
    TRUTH_COLUMN: "Bayes limit",
}
MARGIN_METRICS = ("roc_auc", "pr_auc", "lift_at_capacity")


def _f(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fold_table(bt: Backtest, k: int) -> str:
    """Model against baselines per fold and pooled: ROC AUC, PR AUC and lift at capacity."""
    shown = [s for s in (MODEL, *baselines.NAMES, TRUTH_COLUMN) if s in bt.pooled]
    heads = [LABELS[s] for s in shown]
    blocks = (("ROC AUC", "roc_auc"), ("PR AUC", "pr_auc"), (f"lift@{k}", "lift_at_capacity"))
    header = f"{'fold':<8}{'test months':<24}{'rows':>7}{'pos':>7}"
    for title, _ in blocks:
        header += f" | {title}: " + " ".join(f"{h:>9.9}" for h in heads)
    lines = [header, "-" * len(header)]
    rows = [(f"{r.layout.index}", r.layout.test_dates, r.metrics) for r in bt.folds]
    all_dates = tuple(d for r in bt.folds for d in r.layout.test_dates)
    rows.append(("pooled", all_dates, bt.pooled))
    for name, dates, metrics in rows:
        m = metrics[MODEL]
        line = f"{name:<8}{f'{dates[0]}..{dates[-1]}':<24}{int(m['rows']):>7}{m['base_rate']:>7.1%}"
        for title, key in blocks:
            line += " | " + " " * (len(title) + 1)
            line += " ".join(f"{_f(metrics[s][key]):>9}" for s in shown)
        lines.append(line)
    return "\n".join(lines)


def margins(bt: Backtest) -> dict[str, dict[str, float]]:
    """Baseline -> metric -> pooled model value minus the baseline's."""
    model = bt.pooled[MODEL]
    return {
        b: {key: model[key] - bt.pooled[b][key] for key in MARGIN_METRICS}
        for b in baselines.NAMES
        if b in bt.pooled
    }


def margin_lines(bt: Backtest) -> list[str]:
    out = []
    for b, m in margins(bt).items():
        beaten = all(v > 0 for v in m.values())
        verdict = "beats" if beaten else "does NOT beat"
        out.append(
            f"model {verdict} {LABELS[b]}: ROC AUC {m['roc_auc']:+.3f},"
            f" PR AUC {m['pr_auc']:+.3f}, lift at capacity {m['lift_at_capacity']:+.2f}"
        )
    return out


def gains_chart(bt: Backtest, path: Path, k: int) -> Path:
    """Cumulative gains and lift over the pooled test snapshots, for each scorer."""
    scores = bt.scores
    y = scores["label"].to_numpy()
    fig = Figure(figsize=(11, 4.5))
    gain_ax, lift_ax = fig.subplots(1, 2)
    share = np.arange(1, len(y) + 1) / len(y)
    for name in [s for s in (MODEL, *baselines.NAMES, TRUTH_COLUMN) if s in scores]:
        order = np.lexsort((np.arange(len(y)), -scores[name].to_numpy()))
        gained = np.cumsum(y[order]) / max(y.sum(), 1)
        gain_ax.plot(share, gained, label=LABELS[name])
        lift_ax.plot(share[9:], gained[9:] / share[9:], label=LABELS[name])
    n_dates = scores["as_of"].nunique()
    at = min(1.0, k * n_dates / len(y))
    for ax in (gain_ax, lift_ax):
        ax.axvline(at, color="grey", linestyle=":", label=f"capacity ({k} a date)")
        ax.set_xlabel("share of snapshots contacted, by score")
    gain_ax.plot([0, 1], [0, 1], color="black", linewidth=0.5)
    gain_ax.set_ylabel("share of expansions reached")
    lift_ax.set_ylabel("lift")
    gain_ax.legend(fontsize=8)
    fig.suptitle("Gain and lift, pooled test folds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def calibration_chart(bt: Backtest, path: Path) -> Path:
    """Reliability of the booster's raw score and of the delivered, calibrated score."""
    y = bt.scores["label"].to_numpy()
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    top = 0.0
    for name in (UNCALIBRATED, MODEL):
        table = reliability(y, bt.scores[name].to_numpy())
        ax.plot(table["mean_score"], table["observed_rate"], marker="o", label=LABELS[name])
        top = max(top, float(table["mean_score"].max()), float(table["observed_rate"].max()))
    ax.plot([0, top], [0, top], color="black", linewidth=0.5, label="perfect")
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("observed expansion rate")
    ax.set_title("Calibration, pooled test folds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def importance_chart(
    model: PropensityModel, path: Path, frame: pd.DataFrame, top: int = 25
) -> Path:
    """The boosters' total gain per feature; for the gam alone, each term's mean absolute
    log-odds over (a sample of) `frame`."""
    if model.heads:
        gains = [
            pd.Series(
                h.booster.feature_importance(importance_type="gain"), h.booster.feature_name()
            )
            for h in model.heads
        ]
        table = pd.concat(gains, axis=1).sum(axis=1).sort_values().tail(top)
        measure = "total gain"
    else:
        sample = frame.sample(min(len(frame), 20_000), random_state=0)
        table = contributions(model, sample).values.abs().mean().sort_values().tail(top)
        measure = "mean |log-odds| of the feature's term"
    fig = Figure(figsize=(7, 0.3 * len(table) + 1.2))
    ax = fig.subplots()
    ax.barh(table.index, table.to_numpy())
    ax.set_xlabel(measure)
    ax.set_title("Feature importance (gain), final model")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def shap_summary(
    model: PropensityModel, frame: pd.DataFrame, path: Path, seed: int, top: int = 20
) -> Path:
    """Each feature's SHAP values on a sample, coloured by the feature's value (a beeswarm)."""
    sample = frame.sample(min(len(frame), 2000), random_state=seed)
    matrix = model.matrix(sample)
    values = contributions(model, sample).values.to_numpy()
    order = np.argsort(np.abs(values).mean(axis=0))[-top:]
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(8, 0.35 * len(order) + 1.5))
    ax = fig.subplots()
    for row, j in enumerate(order):
        column = matrix.iloc[:, j]
        raw = column.cat.codes.astype("float64") if column.dtype == "category" else column
        colour = pd.Series(raw).rank(pct=True).fillna(0.5).to_numpy()
        jitter = rng.uniform(-0.3, 0.3, len(values))
        ax.scatter(values[:, j], row + jitter, c=colour, cmap="coolwarm", s=4, alpha=0.6)
    ax.set_yticks(range(len(order)), [matrix.columns[j] for j in order])
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("SHAP value (log-odds); colour: feature value, low blue to high red")
    ax.set_title("SHAP summary, final model")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


LEARNERS = {
    "single": "one booster on the label",
    "regularised": "one booster with fewer, larger leaves: leaves / rows a leaf as a share of"
    " the positives",
    "motions": "one regularised booster per motion, combined as the chance of any",
    "gam": "a spline logistic model, additive in its features",
    "blend": "the best booster, the next best booster learner and the gam averaged in log-odds",
}


def blend_said(choice: Choice, lead: str) -> str:
    """Each part's share of the blend's log-odds, after `lead`; empty without a blend."""
    if choice.blend_parts:
        return lead + ", ".join(f"{k} {v:.1f}" for k, v in choice.blend_parts.items())
    if choice.blend_weight is not None:  # models trained before the partner
        return f"{lead}booster {choice.blend_weight:.1f}, gam {1 - choice.blend_weight:.1f}"
    return ""


def _held(choice: Choice) -> str:
    if choice.arrangement == "crossfit":
        return f"out-of-fold predictions inside the training months ({choice.held_rows:,} rows)"
    return f"the calibration months ({choice.held_rows:,} rows)"


def learner_summary(bt: Backtest, final: Choice | None) -> list[str]:
    """What `train` says of the learners: the final fit's choice and its margin over every
    other learner on held-out predictions, the calibration kept, and each kind's pooled test
    ROC AUC beside the model's."""
    if final is None:
        return []
    aucs = final.calibration_auc
    won = aucs.get(final.learner, float("nan"))
    others = ", ".join(f"{k} {won - v:+.4f}" for k, v in aucs.items() if k != final.learner)
    weight = blend_said(final, "; blend shares of the log-odds: ")
    verb = "kept as the simpler learner" if final.preferred else "won"
    lines = [
        f"final fit: {final.learner} {verb} on {_held(final)} with ROC AUC {won:.4f}"
        + (f", ahead of {others}" if others else "")
        + (f" ({final.preferred})" if final.preferred else "")
        + weight
    ]
    if final.calibration_loss:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in final.calibration_loss.items())
        lines.append(f"calibration kept: {final.calibration} (cross-validated log loss {losses})")
    if final.seconds:
        lines.append(
            "fitting seconds, final fit: "
            + ", ".join(f"{k} {v:.1f}" for k, v in final.seconds.items())
        )
    tested = [k for k in (*KINDS, "logistic") if k in bt.pooled]
    if tested:
        lines.append(
            f"pooled test ROC AUC: model {bt.pooled[MODEL]['roc_auc']:.4f}; "
            + ", ".join(f"{k} {bt.pooled[k]['roc_auc']:.4f}" for k in tested)
        )
    return lines


def learner_lines(bt: Backtest, final: Choice | None) -> str:
    """The model card's section on the learner each layout kept, and the calibration AUCs."""
    if final is None:
        return ""

    def said(name: str, choice: Choice) -> str:
        tried = ", ".join(f"{k} {v:.4f}" for k, v in choice.calibration_auc.items())
        skipped = "".join(f"; {k} not tried: {why}" for k, why in choice.skipped.items())
        fitted = f" (motions fitted: {', '.join(choice.motions)})" if choice.motions else ""
        kind = choice.learner.split(" ")[0]
        weight = blend_said(choice, "; shares in the blend: ")
        losses = ", ".join(f"{k} {v:.4f}" for k, v in choice.calibration_loss.items())
        return (
            f"- {name}: **{choice.learner}** ({LEARNERS[kind]}); ROC AUC on {_held(choice)}:"
            f" {tried}{fitted}{skipped}{weight}"
            + (f"; kept as the simpler learner: {choice.preferred}" if choice.preferred else "")
            + f"; calibration **{choice.calibration}**"
            + (f" (cross-validated log loss {losses})" if losses else "")
        )

    rows = [said(f"fold {f.layout.index}", f.choice) for f in bt.folds if f.choice is not None]
    arranged = (
        "The final model is fitted on every snapshot month whose label has closed. The learner,"
        " the blend's shares, the boosters' rounds and the calibration come from out-of-fold"
        " predictions inside those months: each block of consecutive months is predicted by"
        " models fitted on the months at least one horizon away from it."
        if final.arrangement == "crossfit"
        else "Each layout fits its learners on its training months and decides on its"
        " calibration months, one horizon later."
    )
    survivors = (
        f" Each fold left out of the next the booster learners that trailed its best by more"
        f" than `learning.halving_margin`; the final fit tried {', '.join(bt.survivors)}."
        if bt.survivors
        else ""
    )
    return (
        f"\n## Learner\n{arranged} The test months play no part.{survivors}\n\n"
        + "\n".join([*rows, said("final fit", final)])
        + "\n"
    )


def model_card(
    *,
    name: str,
    version: str,
    run_id: str,
    data_window: str,
    rows: int,
    horizon_days: int,
    bt: Backtest,
    k: int,
    random_auc: float | None,
    alias: str,
    commit: str,
    season_feature: str | None = None,
    shrink: str = "",
    choice: Choice | None = None,
) -> str:
    pooled = bt.pooled
    scorers = [s for s in (MODEL, UNCALIBRATED, *baselines.NAMES, TRUTH_COLUMN) if s in pooled]
    table = [
        "| scorer | ROC AUC | PR AUC | lift@capacity | recall@capacity | top-decile lift"
        " | Brier | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in scorers:
        m = pooled[s]
        table.append(
            f"| {LABELS[s]} | {_f(m['roc_auc'])} | {_f(m['pr_auc'])} |"
            f" {_f(m['lift_at_capacity'], 2)} | {_f(m['recall_at_capacity'])} |"
            f" {_f(m['lift_top_decile'], 2)} | {_f(m['brier'], 4)} | {_f(m['ece'], 4)} |"
        )
    folds = ", ".join(
        f"{r.layout.index}: {r.layout.test_dates[0]}..{r.layout.test_dates[-1]}" for r in bt.folds
    )
    random_line = (
        f"Random-split ROC AUC on the same snapshots: {random_auc:.3f}"
        f" (time split {pooled[MODEL]['roc_auc']:.3f})."
        if random_auc is not None
        else ""
    )
    season_line = (
        f" The booster starts from each `{season_feature}` value's base log-odds in its"
        " training snapshots (`report/season_offset.json`), which calibration leaves unscaled."
        if season_feature
        else ""
    )
    shrink_line = (
        "\n\n**Shrunk backtest.** The history is too short for the configured backtest, so"
        f" training ran a smaller one: {shrink}."
        " Fewer and shorter test folds make the figures below noisier than a full backtest's."
        if shrink
        else ""
    )
    shrink_limit = (
        "\n- The backtest was shrunk to fit a short history (above): retrain with the configured"
        " backtest once the data holds it."
        if shrink
        else ""
    )
    learner_section = learner_lines(bt, choice)
    return f"""# Model card: {name} v{version}

Run `{run_id}`, commit `{commit}`, alias at registration: `{alias}`.

## Intended use
Ranks existing B2B SaaS accounts by the calibrated probability that they expand (more seats, a
higher plan or a new product) within {horizon_days} days of the scoring date, so customer
success managers can choose whom to call with a weekly capacity of {k} accounts. The score is a
probability: 0.3 means about 3 in 10 such accounts expand. `expected_expansion_arr` is the
score times the predicted size of an expansion that happens.

Not for: pricing or credit decisions, judging CSMs, new-logo acquisition, or accounts without
an active subscription (they are not scored).

## Data window
{rows:,} snapshots (one per eligible account and month start), {data_window}. Features read
only rows dated strictly before each snapshot date.

## Backtest
Rolling origin, {len(bt.folds)} folds (test months: {folds}); each fold is trained only on
snapshots whose label window closes before the fold starts, and calibrated on the latest of
those months. Metrics pooled over the test folds; lift and recall at capacity are per
snapshot date with k = {k}.{season_line}{shrink_line}

{chr(10).join(table)}

{chr(10).join("- " + line for line in margin_lines(bt))}

{random_line}
{learner_section}
## Limitations
- Trained on the history in the window above; a change in pricing, packaging or the product's
  event tracking makes the past a poorer guide: retrain and compare with the champion.
- Lift at capacity is measured per month-start list; weekly lists within a month reuse it.
- The calibrator is fitted on the latest months before each test fold; a sudden shift in the
  expansion rate shows up as calibration error until the next retraining.
- The size model learns from expansions that happened; it says nothing about accounts unlike
  any that expanded.{shrink_limit}
"""
