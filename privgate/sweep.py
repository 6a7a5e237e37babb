"""The privacy-utility sweep: compare grid points, choose one, show the trade-off.

A sweep runs the whole pipeline once per grid point (target epsilon x k, optionally x
clipping norm) and hands back one `PointResult` each. This module is the pure part that
follows: the grid, the accuracy each point pays for its privacy, the Pareto front, the
choice, what the sweep costs the privacy ledger, and the report and plots. It never
runs a stage.

The choice is made only among points that passed every gate, so a sweep can only ever
recommend a model the single-run pipeline would have promoted too. Results carry
aggregates only: a crashed point records its stage and error class, never a value.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator

from audits.gates import json_number
from privgate.config import PipelineConfig, _Model

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GATE_STATUSES = ("passed", "failed", "inconclusive")
MISSING = "—"
CHOSEN_MARK = "★"
PARETO_MARK = "◆"
# The membership-inference bound at this FPR: an (epsilon, 0)-DP model keeps any attack
# at TPR <= e^epsilon * FPR, whatever the policy says.
REFERENCE_FPR = 0.01

PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class GridPoint:
    """One setting of the sweep; `target_epsilon` None is the non-private baseline."""

    target_epsilon: float | None
    k: int
    max_grad_norm: float | None = None

    @property
    def label(self) -> str:
        """Return e.g. `eps=1 k=5`, `non-private k=5` or `eps=1 k=5 C=1.0`."""
        head = "non-private" if self.target_epsilon is None else f"eps={self.target_epsilon:g}"
        clip = "" if self.max_grad_norm is None else f" C={float(self.max_grad_norm)!r}"
        return f"{head} k={self.k}{clip}"


def _grid_order(point: GridPoint) -> tuple[bool, float, int, bool, float]:
    """Epsilon ascending with the baseline last, then k, then clipping norm."""
    eps, clip = point.target_epsilon, point.max_grad_norm
    return (eps is None, eps or 0.0, point.k, clip is None, clip or 0.0)


class SweepConfig(_Model):
    """The grid of a privacy-utility sweep: every target epsilon x k (x clipping norm)."""

    epsilons: list[PositiveFloat | None] = Field(
        # Every DP point is charged in full: 2 x (0.5 + 1 + 2) = 7 fits the demo policy's
        # lifetime epsilon of 10; a wider grid needs a wider budget in the policy.
        default=[0.5, 1.0, 2.0, None],
        min_length=1,
        description="Opacus `target_epsilon` of each point; null adds the non-private baseline.",
    )
    ks: list[Annotated[int, Field(ge=1)]] = Field(
        default=[5, 10],
        min_length=1,
        description="Anonymization k of each point: every quasi-identifier class >= k.",
    )
    max_grad_norms: Annotated[list[PositiveFloat], Field(min_length=1)] | None = Field(
        default=None,
        description="Per-sample clipping norms to try; empty means the config's own.",
    )
    workers: int = Field(
        default=2, ge=1, le=64, description="Grid points run in parallel (each a full run)."
    )

    @field_validator("epsilons", "ks", "max_grad_norms")
    @classmethod
    def _no_duplicates(cls, values: list[Any] | None) -> list[Any] | None:
        items = values or []
        repeated = {repr(v) for i, v in enumerate(items) if v in items[:i]}
        if repeated:
            raise ValueError(f"each value may appear once; repeated: {', '.join(sorted(repeated))}")
        return values

    def points(self) -> list[GridPoint]:
        """Return every grid point: epsilon ascending (baseline last), then k, then clip.

        The baseline gets one point per k, not one per clipping norm: training without
        DP clips nothing, so those runs would be identical.
        """
        clips: list[float | None] = list(self.max_grad_norms or [None])
        points = {
            GridPoint(eps, k, None if eps is None else clip)
            for eps, k, clip in product(self.epsilons, self.ks, clips)
        }
        return sorted(points, key=_grid_order)

    def planned_charge(self, target_delta: float) -> tuple[float, float]:
        """Return the (epsilon, delta) the ledger will reserve for the whole grid.

        Compare it with the policy's lifetime budget before starting: the ledger refuses
        a point that would cross it, which would leave the sweep half run.
        """
        targets = [p.target_epsilon for p in self.points() if p.target_epsilon is not None]
        return math.fsum(targets), target_delta * len(targets)


def point_config(config: PipelineConfig, point: GridPoint) -> PipelineConfig:
    """Return `config` set to `point`: its k, its target epsilon (None: DP off), its clip.

    Re-validated as a whole, so a point can never produce a config a run would refuse.
    """
    raw = config.model_dump(mode="json")
    raw["anonymization"]["k"] = point.k
    dp = raw["training"]["dp"]
    dp["enabled"] = point.target_epsilon is not None
    if point.target_epsilon is not None:
        dp["target_epsilon"] = point.target_epsilon
    if point.max_grad_norm is not None:
        dp["max_grad_norm"] = point.max_grad_norm
    return PipelineConfig.model_validate(raw)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PointResult:
    """What one grid point's run measured (aggregates only).

    `epsilon_spent` None means trained without DP (the accountant's infinity is stored
    as None) or never trained. `gates` maps a gate name to its `GateResult.status`.
    `error` names the stage and error class of a crash, e.g. "train: RuntimeError".
    """

    point: GridPoint
    epsilon_spent: float | None = None
    delta: float | None = None
    accuracy: float | None = None
    mia_auc: float | None = None
    mia_tpr_at_1pct_fpr: float | None = None
    empirical_epsilon_lower_bound: float | None = None
    gates: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        eps = self.epsilon_spent
        if eps is not None and math.isinf(eps) and eps > 0:
            object.__setattr__(self, "epsilon_spent", None)  # DpReport's "no DP"
        elif eps is not None and not (math.isfinite(eps) and eps > 0):
            # A DP run that reports no usable epsilon must not pass as "not charged".
            raise ValueError(f"{self.point.label}: epsilon_spent must be > 0 and finite")
        if self.epsilon_spent is not None and self.delta is None:
            raise ValueError(f"{self.point.label}: a DP point needs the delta it spent")
        unknown = {s for s in self.gates.values() if s not in GATE_STATUSES}
        if unknown:
            raise ValueError(
                f"{self.point.label}: gate status must be one of {GATE_STATUSES}, "
                f"got {sorted(unknown)}"
            )

    @property
    def passed(self) -> bool:
        """True only when the point ran, was judged, and every gate passed."""
        return (
            self.error is None
            and bool(self.gates)
            and all(s == "passed" for s in self.gates.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready result (non-finite numbers become null)."""
        return {
            "label": self.point.label,
            "target_epsilon": self.point.target_epsilon,
            "k": self.point.k,
            "max_grad_norm": self.point.max_grad_norm,
            "epsilon_spent": self.epsilon_spent,
            "delta": self.delta,
            "accuracy": json_number(self.accuracy),
            "mia_auc": json_number(self.mia_auc),
            "mia_tpr_at_1pct_fpr": json_number(self.mia_tpr_at_1pct_fpr),
            "empirical_epsilon_lower_bound": json_number(self.empirical_epsilon_lower_bound),
            "gates": dict(self.gates),
            "passed": self.passed,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Choice:
    """The point a sweep recommends (None when no point passed) and why, in words."""

    result: PointResult | None
    reason: str


def _spent(result: PointResult) -> float:
    """Epsilon for comparisons: trained without DP counts as infinitely expensive."""
    return math.inf if result.epsilon_spent is None else result.epsilon_spent


def _ordered(results: Sequence[PointResult]) -> list[PointResult]:
    return sorted(results, key=lambda r: _grid_order(r.point))


def _baselines(results: Sequence[PointResult]) -> dict[tuple[int, float | None], float | None]:
    return {
        (r.point.k, r.point.max_grad_norm): json_number(r.accuracy) if r.error is None else None
        for r in results
        if r.point.target_epsilon is None
    }


def _baseline_for(
    point: GridPoint, baselines: dict[tuple[int, float | None], float | None]
) -> float | None:
    # A clip-specific baseline if the grid has one, else the k's (clipping-free) one.
    for key in ((point.k, point.max_grad_norm), (point.k, None)):
        if key in baselines:
            return baselines[key]
    return None


def accuracy_cost(results: Sequence[PointResult]) -> dict[GridPoint, float | None]:
    """Return what each point's privacy costs in accuracy.

    The cost is the non-private point's accuracy at the same k (and clipping norm, when
    the grid has such a baseline) minus this point's: positive means privacy cost
    accuracy. None when the baseline is missing or crashed, or the point has no accuracy.
    """
    baselines = _baselines(results)
    costs: dict[GridPoint, float | None] = {}
    for result in results:
        base, own = _baseline_for(result.point, baselines), json_number(result.accuracy)
        costs[result.point] = None if base is None or own is None else base - own
    return costs


def _dominates(a: PointResult, b: PointResult) -> bool:
    acc_a, acc_b = a.accuracy or 0.0, b.accuracy or 0.0
    no_worse = _spent(a) <= _spent(b) and acc_a >= acc_b
    return no_worse and (_spent(a) < _spent(b) or acc_a > acc_b)


def pareto_front(results: Sequence[PointResult]) -> list[PointResult]:
    """Return the points no other point beats on both epsilon spent and accuracy.

    Only points that ran and measured accuracy compete; a non-private point spends
    infinite epsilon, so it is on the front only when nothing private matches its
    accuracy. Sorted by epsilon spent, the non-private point last.
    """
    candidates = [r for r in results if r.error is None and json_number(r.accuracy) is not None]
    front = [r for r in candidates if not any(_dominates(o, r) for o in candidates)]
    return sorted(front, key=lambda r: (_spent(r), -(r.accuracy or 0.0), _grid_order(r.point)))


# --------------------------------------------------------------------------- the choice


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return MISSING
    return "∞" if math.isinf(value) else f"{value:.{digits}g}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def choose(results: Sequence[PointResult]) -> Choice:
    """Choose the most accurate point that passed every gate.

    Ties go to the smaller epsilon spent, then the larger k (more anonymity for free),
    then grid order, so the same results always give the same choice.
    """
    total = len(results)
    passing = [r for r in results if r.passed]
    if not passing:
        return Choice(None, _why_none_passed(results))
    best = min(
        passing,
        key=lambda r: (
            -(r.accuracy if json_number(r.accuracy) is not None else -math.inf),
            _spent(r),
            -r.point.k,
            _grid_order(r.point),
        ),
    )
    delta = "" if best.delta is None else f" at delta {_fmt(best.delta, 3)}"
    reason = (
        f"{best.point.label} is the most accurate of the {len(passing)} of "
        f"{_plural(total, 'point')} that passed every gate: accuracy {_fmt(best.accuracy)}, "
        f"epsilon spent {_fmt(_spent(best), 3)}{delta}, MIA AUC {_fmt(best.mia_auc)}."
    )
    return Choice(best, reason)


def _why_none_passed(results: Sequence[PointResult]) -> str:
    if not results:
        return "No point was chosen: the sweep has no results."
    total = len(results)
    crashed = sum(r.error is not None for r in results)
    unjudged = sum(r.error is None and not r.gates for r in results)
    blocking = Counter(
        name
        for r in results
        if r.error is None
        for name, status in r.gates.items()
        if status != "passed"
    )
    parts = []
    if blocking:
        most = max(blocking.values())
        top = sorted(name for name, n in blocking.items() if n == most)
        rest = sorted((-n, name) for name, n in blocking.items() if n < most)
        verb = "blocked" if len(top) == 1 else "each blocked"
        blocked = [f"{' and '.join(top)} {verb} {most} of {total} points"]
        parts.append(", ".join(blocked + [f"{name} {-n}" for n, name in rest]))
    if crashed:
        parts.append(f"{_plural(crashed, 'point')} crashed")
    if unjudged:
        parts.append(f"{_plural(unjudged, 'point')} not judged")
    return f"No point passed every gate (0 of {total}): " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- the ledger


def ledger_charge(results: Sequence[PointResult]) -> tuple[float, float]:
    """Return the (epsilon, delta) the whole sweep spends, by basic composition.

    Every point that trained with DP is charged, whether it passed its gates or not:
    the choice is a function of every point's results, so the released model leaks
    through the selection about the data every point trained on. Summing is basic
    composition, valid however the points were chosen; Papernot & Steinke (2022,
    "Hyperparameter Tuning with Renyi Differential Privacy") give much tighter bounds
    for private selection with a randomized number of trials, not implemented here.

    Points without a spend are free: non-private baselines (they fail the budget gate
    and are never released) and crashes before training. The persistent ledger stays
    the authority: it keeps the whole reservation of a point that crashed mid-training
    (fail closed), which this sum, seeing no spend, leaves out.
    """
    charged = [r for r in results if r.epsilon_spent is not None]
    epsilon = math.fsum(r.epsilon_spent for r in charged if r.epsilon_spent is not None)
    delta = math.fsum(r.delta for r in charged if r.delta is not None)
    return epsilon, delta


# --------------------------------------------------------------------------- reports


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _gates_cell(result: PointResult) -> str:
    if result.error is not None:
        return f"crashed ({result.error})"
    if not result.gates:
        return "not judged"
    if result.passed:
        return "all passed"
    groups = [
        f"{status}: {', '.join(n for n, s in result.gates.items() if s == status)}"
        for status in ("failed", "inconclusive")
        if status in result.gates.values()
    ]
    return "; ".join(groups)


def to_markdown(results: Sequence[PointResult], choice: Choice) -> str:
    """Return the sweep as a Markdown table, then the choice and the ledger charge."""
    costs = accuracy_cost(results)
    front = {r.point for r in pareto_front(results)}
    chosen = choice.result.point if choice.result else None
    lines = [
        "## Privacy-utility sweep",
        "",
        "| | point | ε spent | k | accuracy | accuracy cost | MIA AUC | TPR@1%FPR "
        "| emp. ε lower bound | gates |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in _ordered(results):
        mark = (CHOSEN_MARK if r.point == chosen else "") + (
            PARETO_MARK if r.point in front else ""
        )
        spent = "∞" if r.point.target_epsilon is None else _fmt(r.epsilon_spent, 3)
        cost = costs.get(r.point)
        cells = [
            mark,
            f"`{r.point.label}`",
            spent,
            str(r.point.k),
            _fmt(r.accuracy),
            MISSING if cost is None else f"{cost:+.3g}",
            _fmt(r.mia_auc),
            _fmt(r.mia_tpr_at_1pct_fpr),
            _fmt(r.empirical_epsilon_lower_bound, 3),
            _gates_cell(r),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    epsilon, delta = ledger_charge(results)
    runs = sum(r.epsilon_spent is not None for r in results)
    lines += [
        "",
        f"{CHOSEN_MARK} chosen · {PARETO_MARK} Pareto front (no other point spends less "
        "epsilon and is at least as accurate, or is more accurate for no more epsilon)",
        "",
        f"**Choice:** {choice.reason}",
        "",
        f"**Ledger charge:** epsilon {_fmt(epsilon, 4)}, delta {_fmt(delta, 3)} over "
        f"{_plural(runs, 'DP training run')} (basic composition: the whole sweep is "
        "charged, not only the chosen point).",
    ]
    return "\n".join(lines) + "\n"


def to_dict(results: Sequence[PointResult], choice: Choice) -> dict[str, Any]:
    """Return the JSON-ready summary of the sweep (aggregates only)."""
    costs = accuracy_cost(results)
    epsilon, delta = ledger_charge(results)
    return {
        "points": [
            {**r.to_dict(), "accuracy_cost": json_number(costs.get(r.point))}
            for r in _ordered(results)
        ],
        "chosen": choice.result.point.label if choice.result else None,
        "reason": choice.reason,
        "pareto": [r.point.label for r in pareto_front(results)],
        "ledger_charge": {"epsilon": epsilon, "delta": delta},
    }


# --------------------------------------------------------------------------- plots


def _series_label(k: int, clip: float | None) -> str:
    return f"k={k}" if clip is None else f"k={k} C={float(clip)!r}"


def _private_series(
    results: Sequence[PointResult], metric: str
) -> dict[tuple[int, float | None], list[tuple[float, float]]]:
    """Return (epsilon spent, metric) pairs of the DP points, by (k, clip), by epsilon."""
    series: dict[tuple[int, float | None], list[tuple[float, float]]] = defaultdict(list)
    for r in results:
        value = json_number(getattr(r, metric))
        if r.error is None and r.epsilon_spent is not None and value is not None:
            series[(r.point.k, r.point.max_grad_norm)].append((r.epsilon_spent, value))
    return {key: sorted(pairs) for key, pairs in sorted(series.items(), key=_series_order)}


def _series_order(item: tuple[tuple[int, float | None], Any]) -> tuple[int, bool, float]:
    (k, clip), _ = item
    return (k, clip is None, clip or 0.0)


def _non_private(results: Sequence[PointResult], metric: str) -> dict[int, float]:
    return {
        r.point.k: value
        for r in results
        if r.error is None
        and r.point.target_epsilon is None
        and (value := json_number(getattr(r, metric))) is not None
    }


def _plot_by_k(
    axes: Axes, results: Sequence[PointResult], metric: str, floor: float = 0.0
) -> list[float]:
    """Draw one line per (k, clip) and the non-private value per k; return the epsilons."""
    series = _private_series(results, metric)
    baselines = _non_private(results, metric)
    ks = sorted({k for k, _ in series} | set(baselines))
    color = {k: f"C{i % 10}" for i, k in enumerate(ks)}
    markers = "osD^v"
    clips = sorted({c for _, c in series if c is not None})
    for (k, clip), pairs in series.items():
        marker = markers[clips.index(clip) % len(markers)] if clip is not None else "o"
        axes.plot(
            [x for x, _ in pairs],
            [max(y, floor) for _, y in pairs],
            marker=marker,
            color=color[k],
            label=_series_label(k, clip),
        )
    for k, value in sorted(baselines.items()):
        axes.axhline(
            max(value, floor),
            linestyle="--",
            linewidth=1,
            color=color[k],
            label=f"k={k} non-private",
        )
    return [x for pairs in series.values() for x, _ in pairs]


def _epsilon_range(epsilons: Sequence[float]) -> tuple[float, float]:
    if not epsilons:
        return 0.1, 10.0
    return min(epsilons) / 1.5, max(epsilons) * 1.5


def _finish(figure: Figure, axes: Axes, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if axes.get_legend_handles_labels()[0]:
        # Beside the axes: a sweep's lines fill any corner a legend could take.
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_sweep(results: Sequence[PointResult], directory: Path) -> list[Path]:
    """Write the trade-off plots into `directory` and return their paths.

    `accuracy_vs_epsilon.png`, `mia_tpr_vs_epsilon.png` and `pareto_front.png`; epsilon
    is on a log axis, where a grid doubling epsilon spreads evenly.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display; also keeps matplotlib from probing for one
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = []

    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    epsilons = _plot_by_k(axes, results, "accuracy")
    axes.set_xscale("log")
    axes.set_xlim(*_epsilon_range(epsilons))
    axes.set_xlabel("epsilon spent (log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Accuracy vs privacy (dashed: without DP)")
    paths.append(_finish(figure, axes, directory / "accuracy_vs_epsilon.png"))

    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    floor = 1e-3  # a TPR of 0 has no place on a log axis
    epsilons = _plot_by_k(axes, results, "mia_tpr_at_1pct_fpr", floor=floor)
    low, high = _epsilon_range(epsilons)
    grid = [low * (high / low) ** (i / 99) for i in range(100)]
    axes.plot(
        grid,
        [min(1.0, math.exp(x) * REFERENCE_FPR) for x in grid],
        color="grey",
        linestyle=":",
        label="e^eps x 1%: DP's ceiling (delta ignored)",
    )
    axes.axhline(REFERENCE_FPR, color="grey", linewidth=0.8, label="guessing (TPR = FPR)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_ylim(floor * 0.8, 1.2)
    axes.set_xlabel("epsilon spent (log scale)")
    axes.set_ylabel("membership-inference TPR at 1% FPR")
    axes.set_title("Membership inference vs privacy (strongest attack)")
    paths.append(_finish(figure, axes, directory / "mia_tpr_vs_epsilon.png"))

    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    _plot_pareto(axes, results)
    paths.append(_finish(figure, axes, directory / "pareto_front.png"))
    return paths


def _plot_pareto(axes: Axes, results: Sequence[PointResult]) -> None:
    measured = [r for r in results if r.error is None and json_number(r.accuracy) is not None]
    finite = [r.epsilon_spent for r in measured if r.epsilon_spent is not None]
    # Non-private points spend infinite epsilon: drawn at the right edge, labelled.
    infinity = max(finite) * 4 if finite else 1.0

    def x(result: PointResult) -> float:
        return infinity if result.epsilon_spent is None else result.epsilon_spent

    axes.scatter(
        [x(r) for r in measured],
        [r.accuracy or 0.0 for r in measured],
        color="grey",
        s=18,
        label="grid points",
    )
    front = pareto_front(results)
    if front:
        axes.plot(
            [x(r) for r in front],
            [r.accuracy or 0.0 for r in front],
            marker="o",
            color="C0",
            label="Pareto front",
        )
    chosen = choose(results).result
    if chosen is not None and chosen.error is None and json_number(chosen.accuracy) is not None:
        axes.scatter(
            [x(chosen)],
            [chosen.accuracy or 0.0],
            marker="*",
            s=260,
            color="gold",
            edgecolors="black",
            zorder=3,
            label=f"chosen: {chosen.point.label}",
        )
    if any(r.epsilon_spent is None for r in measured):
        axes.axvline(infinity, color="grey", linestyle=":", linewidth=0.8)
        axes.annotate(
            "non-private",
            (infinity, 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            ha="right",
            fontsize="small",
        )
    axes.set_xscale("log")
    axes.set_xlim(min([*finite, infinity]) / 1.5, infinity * 1.5)
    axes.set_xlabel("epsilon spent (log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Privacy-utility Pareto front")
