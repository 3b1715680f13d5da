"""Choosing a learner on held-out predictions when the evidence is thin.

The learner with the best held-out ROC AUC is not always the one to keep: on a short history
the held-out months are few, and the best of several learners is then often the luckiest. So a
learner is kept by a rule like the calibrator's: a more flexible learner has to beat a simpler
one month by month, beyond what the spread of its monthly leads allows by chance (a paired
t-test, the held-out months as the units: the model is used on later months, so a lead has to
hold from one month to the next). The learner kept is the simplest one the best does not beat
that clearly. With few held-out months the test asks a lot (t above 4.30 with three months,
2.09 with twenty), so a short history keeps the simpler learner unless the lead is steady.
The rule is for short histories: with a year or more of held-out months the best is kept, as
there a 95% test gives away small but real leads (measured in docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from expansion_scorer.training.metrics import ranked_auc


def auc_influence(score: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """ROC AUC and each row's share of its deviation (DeLong's placement values): positives
    by the fraction of negatives ranked below them, negatives by the fraction of positives
    ranked above them, ties counting half. The rows' influences sum to zero."""
    score = np.asarray(score, dtype="float64")
    positive = np.asarray(y) == 1
    pos, neg = np.sort(score[positive]), np.sort(score[~positive])
    n_pos, n_neg = len(pos), len(neg)
    placed = np.empty(len(score))
    s = score[positive]
    placed[positive] = (np.searchsorted(neg, s, "left") + np.searchsorted(neg, s, "right")) / (
        2 * n_neg
    )
    s = score[~positive]
    below = (np.searchsorted(pos, s, "left") + np.searchsorted(pos, s, "right")) / 2
    placed[~positive] = (n_pos - below) / n_pos
    auc = float(placed[positive].mean())
    influence = np.where(positive, (placed - auc) / n_pos, (placed - auc) / n_neg)
    return auc, influence


def month_gaps(a: np.ndarray, b: np.ndarray, y: np.ndarray, months: np.ndarray) -> np.ndarray:
    """ROC AUC(a) - ROC AUC(b) within each held-out month that holds both outcomes."""
    out = []
    for month in np.unique(months):
        at = months == month
        if 0 < y[at].sum() < at.sum():
            out.append(ranked_auc(y[at], a[at]) - ranked_auc(y[at], b[at]))
    return np.asarray(out, dtype="float64")


def separated(gaps: np.ndarray, confidence: float) -> tuple[bool, str]:
    """Whether the month-by-month gaps are above zero at `confidence` (a paired t-test, two
    sided, the months as the units), and the evidence in words."""
    m = len(gaps)
    if m < 2:
        return False, f"{m} held-out month with both outcomes, too few to test"
    mean, sd = float(gaps.mean()), float(gaps.std(ddof=1))
    if sd == 0:
        return mean > 0, f"the same gap {mean:.4f} in each of {m} held-out months"
    t = mean / (sd / np.sqrt(m))
    needed = float(student_t.ppf(1 - (1 - confidence) / 2, m - 1))
    said = f"{mean:+.4f} ROC AUC a month over {m} held-out months, t {t:.2f} (needs {needed:.2f})"
    return t > needed, said


@dataclass(frozen=True)
class Kept:
    """The learner kept, the best on held-out ROC AUC, and why they differ when they do."""

    learner: str
    best: str
    reason: str = ""
    """Empty when the best is kept; else the best's lead over the one kept, month by month."""


def simplest_within(
    held: Mapping[str, np.ndarray],
    scored: Mapping[str, float],
    y: np.ndarray,
    months: np.ndarray,
    complexity: Callable[[str], tuple[float, ...]],
    confidence: float | None,
    below_months: int | None = None,
) -> Kept:
    """The simplest learner (by `complexity`, ties: the better score) whose held-out ROC AUC
    the best one's does not beat month by month at `confidence` (`separated`), when the
    held-out rows span fewer than `below_months` months (None: however many); else, or with
    no confidence, the best."""
    best = max(scored, key=lambda k: scored[k])
    if confidence is None or (below_months is not None and len(set(months)) >= below_months):
        return Kept(best, best)
    for name in sorted(scored, key=lambda k: (complexity(k), -scored[k])):
        if name == best:
            return Kept(best, best)
        clear, said = separated(month_gaps(held[best], held[name], y, months), confidence)
        if not clear:
            return Kept(name, best, f"{best} led by {said}")
    return Kept(best, best)


def complexity(
    learners: list[tuple[str, str, int | None]], num_leaves: int
) -> Callable[[str], tuple[float, ...]]:
    """How flexible each learner is, simplest first: the gam (additive, no interactions), then
    the boosters by leaves per tree (one head before one per motion), then the blend (a booster
    and the gam together). `learners`: (name, kind, leaves or None for the configured)."""
    known = {
        name: (kind, num_leaves if leaves is None else leaves) for name, kind, leaves in learners
    }

    def of(name: str) -> tuple[float, ...]:
        if name == "gam":
            return (0.0, 0.0, 0.0)
        if name in known:
            kind, leaves = known[name]
            return (1.0, float(leaves), 1.0 if kind == "motions" else 0.0)
        return (2.0, 0.0, 0.0)

    return of
