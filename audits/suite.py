"""The audit: membership-inference attacks behind one registry, judged together.

An attack is a function from the target's and the reference models' true-label
probabilities on the audited records (members first, then non-members) to one score per
record; `@register_attack` adds one. `run_attacks` evaluates every configured attack,
bounds epsilon from each attack's scores (Clopper-Pearson) and checks the definition of
DP at the claimed epsilon; `AuditReport` gathers that with the canary audit. Gates judge
the strongest attack, because an audit is only as strong as the best attack it ran.

The attacks' epsilon bounds treat the random member/holdout split of one training run
as the randomization, with delta per record: an approximation (the classic audit wants
independent trials, the one-run audit a 2 m delta term), whose errors make the bound
larger, so they lean towards blocking. The canary audit is the rigorous bound.

Per-record scores and probabilities never leave this module: the report holds aggregates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from audits.canaries import CanaryAudit
from audits.empirical_epsilon import (
    EpsilonLowerBound,
    dp_violations,
    epsilon_lower_bound_from_scores,
)
from audits.membership_inference import (
    MembershipInferenceResult,
    evaluate_scores,
    lira_offline_scores,
    rmia_scores,
)

# RMIA's offline correction for reference models that never saw the record; the paper's
# value for offline attacks with few reference models.
RMIA_OFFLINE_A = 0.3


@dataclass(frozen=True)
class Attack:
    """A registered attack: its score function and whether it needs reference models."""

    name: str
    score: Callable[[np.ndarray, np.ndarray | None], np.ndarray]
    needs_reference: bool


_ATTACKS: dict[str, Attack] = {}


def register_attack(
    name: str, *, needs_reference: bool = False
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register `fn(target_p, reference_p) -> scores` as attack `name`."""

    def decorate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in _ATTACKS:
            raise ValueError(f"attack {name!r} is registered twice")
        _ATTACKS[name] = Attack(name, fn, needs_reference)
        return fn

    return decorate


def attack_names() -> list[str]:
    """Return the registered attack names."""
    return list(_ATTACKS)


def needs_reference(names: Sequence[str]) -> bool:
    """Return whether any of the named attacks needs reference models."""
    return any(_attack(n).needs_reference for n in names)


def _attack(name: str) -> Attack:
    try:
        return _ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known: {attack_names()}") from None


@register_attack("loss_threshold")
def _loss_threshold(target_p: np.ndarray, reference_p: np.ndarray | None) -> np.ndarray:
    """Yeom et al. 2018: low loss (-log p of the true label) suggests a member."""
    return np.log(target_p)


@register_attack("rmia", needs_reference=True)
def _rmia(target_p: np.ndarray, reference_p: np.ndarray | None) -> np.ndarray:
    assert reference_p is not None
    return rmia_scores(target_p, reference_p, offline_a=RMIA_OFFLINE_A)


@register_attack("lira_offline", needs_reference=True)
def _lira_offline(target_p: np.ndarray, reference_p: np.ndarray | None) -> np.ndarray:
    assert reference_p is not None
    return lira_offline_scores(target_p, reference_p)


@dataclass(frozen=True)
class AuditReport:
    """Everything the audit measured, as aggregates.

    Attributes:
        attacks: Each attack's metrics, on members vs non-members.
        bounds: Each attack's Clopper-Pearson epsilon lower bound, by attack name.
        violations: Grid points where an attack beats the claimed (epsilon, delta).
        canary: The one-run canary audit of the training code (None: not run).
        control: The same canary audit without DP: the audit's power (None: not run).
        claimed_epsilon: The epsilon the target's accountant claims (inf: no DP).
        delta: The delta of the claim.
        worst_decile: The strongest attack on the most atypical tenth of the records.
        reference_models: How many reference models the attacks used.
        seconds: Wall time of the whole audit.
    """

    attacks: tuple[MembershipInferenceResult, ...]
    bounds: dict[str, EpsilonLowerBound]
    violations: tuple[dict[str, Any], ...]
    canary: CanaryAudit | None
    control: CanaryAudit | None
    claimed_epsilon: float
    delta: float
    worst_decile: MembershipInferenceResult | None = None
    reference_models: int = 0
    seconds: float = field(default=0.0, compare=False)

    @property
    def strongest(self) -> MembershipInferenceResult:
        """The attack with the highest TPR at 1% FPR (then AUC)."""
        return max(self.attacks, key=lambda a: (a.mia_tpr_at_1pct_fpr, a.mia_auc))

    @property
    def mia_auc(self) -> float:
        """The highest AUC of any attack."""
        return max(a.mia_auc for a in self.attacks)

    @property
    def mia_tpr_at_1pct_fpr(self) -> float:
        """The highest TPR at 1% FPR of any attack."""
        return max(a.mia_tpr_at_1pct_fpr for a in self.attacks)

    @property
    def mia_tpr_at_0_1pct_fpr(self) -> float:
        """The highest TPR at 0.1% FPR of any attack."""
        return max(a.mia_tpr_at_0_1pct_fpr for a in self.attacks)

    @property
    def canary_bounds(self) -> dict[str, tuple[float, float]]:
        """Return the canary audits' (bound, claim) pairs, named: `black_box`, `white_box`.

        Both are about the DP audit run (same code and settings as the target) and the
        claim of that run.
        """
        pairs: dict[str, tuple[float, float]] = {}
        if self.canary is not None:
            if self.canary.bound is not None:
                pairs["black_box"] = (self.canary.bound.epsilon, self.canary.claimed_epsilon)
            if self.canary.white_box is not None:
                white = self.canary.white_box
                pairs["white_box"] = (white.bound.epsilon, white.claimed_epsilon)
        return pairs

    @property
    def empirical_epsilon_lower_bound(self) -> float:
        """The largest lower bound any part of the audit proved."""
        bounds = [b.epsilon for b in self.bounds.values()]
        bounds += [bound for bound, _ in self.canary_bounds.values()]
        return max(bounds, default=0.0)

    @property
    def closest_to_refuting_claim(self) -> tuple[float, float]:
        """Return (bound, claim) of the bound that comes closest to its own run's claim.

        The attacks' bounds are about the target and its claim; the canary audits'
        bounds are about the audit run and the claim of that run. If any bound exceeds
        its claim, the pair returned shows it.
        """
        pairs = [(b.epsilon, self.claimed_epsilon) for b in self.bounds.values()]
        pairs += list(self.canary_bounds.values())
        return max(pairs, key=lambda pair: pair[0] - pair[1])

    @property
    def control_epsilon_lower_bound(self) -> float | None:
        """What the audit proves about the same recipe with the noise off (its power).

        The white-box control's bound when it ran (the power rule judges it), else the
        black-box control's.
        """
        if self.control is None:
            return None
        if self.control.white_box is not None:
            return self.control.white_box.bound.epsilon
        return None if self.control.bound is None else self.control.bound.epsilon

    @property
    def white_box_plan(self) -> dict[str, Any] | None:
        """The white-box control's plan (canaries, guesses needed), when it ran."""
        if self.control is None or self.control.white_box is None:
            return None
        return self.control.white_box.plan.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON report (the keys `privgate audit --json` promises, and more)."""
        return {
            "mia_auc": self.mia_auc,
            "mia_tpr_at_1pct_fpr": self.mia_tpr_at_1pct_fpr,
            "mia_tpr_at_0_1pct_fpr": self.mia_tpr_at_0_1pct_fpr,
            "strongest_attack": self.strongest.attack,
            "empirical_epsilon_lower_bound": self.empirical_epsilon_lower_bound,
            "claimed_epsilon": _finite(self.claimed_epsilon),
            "delta": self.delta,
            "control_epsilon_lower_bound": self.control_epsilon_lower_bound,
            "canary_epsilon_lower_bounds": {
                name: {"epsilon": bound, "claimed_epsilon": _finite(claim)}
                for name, (bound, claim) in self.canary_bounds.items()
            },
            "white_box_plan": self.white_box_plan,
            "attacks": [
                {**a.to_dict(), "epsilon_lower_bound": self.bounds[a.attack].to_dict()}
                for a in self.attacks
            ],
            "dp_violations": list(self.violations),
            "canary_audit": None if self.canary is None else self.canary.to_dict(),
            "control": None if self.control is None else self.control.to_dict(),
            "worst_decile": None if self.worst_decile is None else self.worst_decile.to_dict(),
            "reference_models": self.reference_models,
            "seconds": self.seconds,
        }

    def to_markdown(self) -> str:
        """Return the report as Markdown tables."""
        lines = [
            "## Privacy audit",
            "",
            "| attack | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | advantage | ε lower bound |",
            "|---|---|---|---|---|---|",
        ]
        for a in self.attacks:
            lines.append(
                f"| `{a.attack}` | {a.mia_auc:.4f} | {a.mia_tpr_at_1pct_fpr:.4f} | "
                f"{a.mia_tpr_at_0_1pct_fpr:.4f} | {a.attacker_advantage:.4f} | "
                f"{self.bounds[a.attack].epsilon:.3f} |"
            )
        claimed = f"{self.claimed_epsilon:.4g}"
        if not math.isfinite(self.claimed_epsilon):
            claimed = "∞ (no DP)"
        lines += ["", f"Claimed epsilon {claimed} at delta {self.delta:.3g}."]
        runs = (("DP audit run", self.canary), ("Control (noise off)", self.control))
        for title, run in runs:
            if run is None:
                lines.append(f"{title}: not run.")
                continue
            for kind, b in (
                ("black box, input canaries", run.bound),
                ("white box, gradient canaries", run.white_box and run.white_box.bound),
            ):
                if b is None:
                    continue
                lines.append(
                    f"{title}, {kind}: {b.canaries} canaries, {b.correct} of {b.guesses} "
                    f"guesses correct, epsilon >= {b.epsilon:.3f} at {b.confidence:.0%} "
                    f"confidence ({run.seconds:.1f} s)."
                )
        plan = self.white_box_plan
        if plan is not None and plan["needed_guesses"] is not None:
            lines.append(
                f"Proving the claim needs {plan['needed_guesses']} guesses all right; the "
                f"white-box audit used {plan['canaries']} canaries and tried "
                f"{', '.join(map(str, plan['grid']))} guesses."
            )
        if self.worst_decile is not None:
            w = self.worst_decile
            lines.append(
                f"Most atypical tenth of records ({w.members} members, {w.non_members} "
                f"non-members), `{w.attack}`: AUC {w.mia_auc:.4f}, TPR @ 1% FPR "
                f"{w.mia_tpr_at_1pct_fpr:.4f}."
            )
        if self.violations:
            lines.append(f"**{len(self.violations)} violation(s) of the DP definition.**")
        return "\n".join(lines) + "\n"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run_attacks(
    target_p: np.ndarray,
    reference_p: np.ndarray | None,
    *,
    members: int,
    attacks: Sequence[str],
    claimed_epsilon: float,
    delta: float,
    confidence: float,
    canary: CanaryAudit | None = None,
    control: CanaryAudit | None = None,
    seconds: float = 0.0,
) -> AuditReport:
    """Run the named attacks on true-label probabilities; members are the first `members`.

    Args:
        target_p: The target's probability of each audited record's true label, (n,).
        reference_p: Reference models' probabilities on the same records, (K, n), or None
            when no attack needs them.
        members: How many of the records (the first ones) are members.
        attacks: Registered attack names.
        claimed_epsilon: The target's claimed epsilon (inf when trained without DP).
        delta: The claimed delta; also the delta of the lower bounds.
        confidence: Confidence of each bound and of each attack's definitional check
            (split the overall error over the attacks and the canary audit first).
        canary: The canary audit, when run.
        control: Its non-private control, when run.
        seconds: Wall time spent so far (reference models, canary runs).

    Raises:
        ValueError: for an unknown attack, or a reference attack without references.
    """
    if not attacks:
        raise ValueError("the audit needs at least one attack")
    chosen = [_attack(name) for name in attacks]
    if reference_p is None and any(a.needs_reference for a in chosen):
        raise ValueError("reference attacks need reference-model probabilities")
    results, bounds, violations, scores_by = [], {}, [], {}
    for attack in chosen:
        scores = attack.score(target_p, reference_p)
        member_scores, non_member_scores = scores[:members], scores[members:]
        results.append(evaluate_scores(member_scores, non_member_scores, attack=attack.name))
        bounds[attack.name] = epsilon_lower_bound_from_scores(
            member_scores, non_member_scores, delta=delta, confidence=confidence
        )
        if math.isfinite(claimed_epsilon):
            for violation in dp_violations(
                member_scores,
                non_member_scores,
                epsilon=claimed_epsilon,
                delta=delta,
                confidence=confidence,
            ):
                violations.append({"attack": attack.name, **violation})
        scores_by[attack.name] = scores
    report = AuditReport(
        attacks=tuple(results),
        bounds=bounds,
        violations=tuple(violations),
        canary=canary,
        control=control,
        claimed_epsilon=claimed_epsilon,
        delta=delta,
        reference_models=0 if reference_p is None else len(reference_p),
        seconds=seconds,
    )
    if reference_p is None:
        return report
    strongest = report.strongest.attack
    worst = _worst_decile(scores_by[strongest], reference_p, members=members, attack=strongest)
    return replace(report, worst_decile=worst)


def _worst_decile(
    scores: np.ndarray, reference_p: np.ndarray, *, members: int, attack: str
) -> MembershipInferenceResult | None:
    """The attack on the tenth of records the reference models find hardest.

    Averages hide the records most at risk: atypical records are the ones models
    memorize. Atypicality is the reference models' mean loss on the record, which does
    not depend on the target, so selecting by it does not bias the attack's result.
    """
    atypicality = -np.log(reference_p).mean(axis=0)
    worst = atypicality >= np.quantile(atypicality, 0.9)
    is_member = np.arange(len(scores)) < members
    chosen_members, chosen_non = worst & is_member, worst & ~is_member
    if chosen_members.sum() < 10 or chosen_non.sum() < 10:
        return None
    return evaluate_scores(
        scores[chosen_members], scores[chosen_non], attack=f"{attack}_worst_decile"
    )
