"""The run summary: what a run made and what to look at, in the few lines a data engineer reads
at the end of ``python -m loan_pipeline run`` and, the same text, as the last log entry of the
run in the UI (``published_snapshot`` logs it).

Plain data in, text out (no Dagster here): the assets the run materialized in graph order, each
with its materialization metadata as plain values, and its asset check results. The key names
read here are the ones the assets record: ``dagster/row_count`` (every table),
``quarantined_rows``/``rows_read`` (quarantined_loans), ``segmentation_verdict``
(cluster_model), ``policy`` and the capacities (recovery_strategies), and the risk model's
checks, which decide the policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loan_pipeline.domain import POLICY_CAPACITY, POLICY_FALLBACK

ROW_COUNT = "dagster/row_count"
# the assets whose figures the summary quotes
QUARANTINE_ASSET = "quarantined_loans"
SOURCE_ASSET = "raw_loans"
SEGMENTS_ASSET = "cluster_model"
STRATEGY_ASSET = "recovery_strategies"
# the checks on this asset are the gate of the scores: one fails, the strategies fall back
GATE_ASSET = "risk_model"
SEVERITIES = ("ERROR", "WARN")


@dataclass(frozen=True)
class Materialized:
    """One asset the run materialized: its key and its metadata (plain values)."""

    key: str
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """One asset check evaluation of the run; ``severity`` is ``ERROR`` or ``WARN``."""

    asset: str
    name: str
    passed: bool
    severity: str
    description: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)


def graph_order(toposorted: Sequence[str], made: Sequence[Materialized]) -> list[Materialized]:
    """``made`` in the order of ``toposorted`` (the asset graph's topological order: each
    asset after everything it reads); a key not in the graph goes last."""
    rank = {key: i for i, key in enumerate(toposorted)}
    return sorted(made, key=lambda m: (rank.get(m.key, len(rank)), m.key))


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def segments_line(verdict: str) -> str:
    """The verdict on the run's segments, so a convenient split is not read as groups the data
    insist on."""
    return f"Segments:  {verdict} (evidence: chart_k_selection)"


def quarantine_line(rows: int, total: int) -> str:
    share = rows / total if total else 0.0
    return f"Quarantined: {rows} of {total} rows ({share:.1%}); see table {QUARANTINE_ASSET}"


def published_line(before: Mapping | None, after: Mapping | None, run_id: str) -> str:
    """What the published state is now, said from the storage's manifests (``before`` and
    ``after`` the run; None: nothing published), not from the run's hopes: this run's
    snapshot, or the one that was there before, untouched."""
    if after is not None and after["snapshot"] == run_id:
        return f"Published: snapshot {run_id} (storage/current; {len(after['items'])} items)."
    if before is None:
        return "Nothing was published: there is no published snapshot yet."
    return (
        f"Nothing was published: the published snapshot is still {before['snapshot']} "
        f"(from {before.get('source', {}).get('path', '?')})."
    )


def _asset_lines(made: Sequence[Materialized]) -> list[str]:
    width = max(len(m.key) for m in made)
    lines = ["Assets, in graph order (each after what it reads), with table rows:"]
    for m in made:
        rows = m.metadata.get(ROW_COUNT)
        lines.append(f"  {m.key:<{width}}  {int(rows):>9,}" if rows is not None else f"  {m.key}")
    return lines


def _check_lines(checks: Sequence[CheckResult], order: Mapping[str, int]) -> list[str]:
    """A count, then every failed check, ERROR before WARN, each with its own reason."""
    failed = [c for c in checks if not c.passed]
    if not checks:
        return []
    if not failed:
        return [f"Checks:    {len(checks)} evaluated, all passed"]
    by = {s: sum(c.severity == s for c in failed) for s in SEVERITIES}
    counts = ", ".join(f"{n} {s}" for s, n in by.items() if n)
    lines = [f"Checks:    {len(checks)} evaluated, {len(failed)} failed ({counts})"]
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    for c in sorted(failed, key=lambda c: (rank.get(c.severity, 2), order.get(c.asset, 0))):
        reason = one_line(c.description) or "failed (the check gave no reason)"
        lines.append(f"  {c.severity:<5} {c.asset} / {c.name}: {reason}")
    return lines


def _gate_figures(check: CheckResult) -> str:
    """The figure a gate check decided on, when it records one (the Brier skill and its bar)."""
    skill, bar = (check.metadata.get(k) for k in ("brier_skill_vs_base_rate", "min_skill"))
    if not isinstance(skill, int | float) or not isinstance(bar, int | float):
        return ""
    # the check's own verdict gives the sign: shown figures are rounded, the decision was not
    return f" (Brier skill {skill:.4f} {'>=' if check.passed else '<'} min_skill {bar:.4f})"


def policy_line(strategies: Mapping[str, object], gate: Sequence[CheckResult]) -> str | None:
    """Which policy gave the strategies (recovery_strategies' ``policy``) and why: the risk
    model's gate checks of this run (``gate``), passed or failed; None if the run made no
    strategies."""
    policy = strategies.get("policy")
    if policy is None:
        return None
    failed = [c for c in gate if not c.passed]
    if failed:
        why = "the risk model failed " + " and ".join(c.name + _gate_figures(c) for c in failed)
        why += ": the strategies come from the rules on arrears, not from the scores"
    elif gate:
        why = "the risk model passed " + " and ".join(c.name + _gate_figures(c) for c in gate)
    elif policy == POLICY_FALLBACK:
        why = "the risk model failed its gate in the run that fitted it"
    else:
        why = "the risk model passed its gate in the run that fitted it"
    if policy == POLICY_CAPACITY:
        cut = (
            f"worklist by {strategies.get('ranking_key')}, cut at "
            f"{strategies.get('legal_capacity')} legal and "
            f"{strategies.get('settlement_capacity')} settlement"
        )
        why = f"assignment 'capacity' was asked for ({cut}) and {why}"
    return f"Policy:    {policy}, because {why}"


def summary(
    run_id: str,
    made: Sequence[Materialized],
    checks: Sequence[CheckResult],
    paths: Mapping[str, str],
    published: str,
) -> str:
    """The run summary: a header line, the assets ``made`` (in graph order) with their row
    counts, the failed checks with their reasons, the strategy policy and why, the quarantine,
    the segments' verdict, the ``paths`` (label: path, in order) and, last, the ``published``
    line (``published_line``)."""
    meta = {m.key: m.metadata for m in made}
    source = meta.get(SOURCE_ASSET, {}).get("source_path") or "the published tables"
    lines = [f"Loan pipeline run {run_id} succeeded: {len(made)} assets from {source}"]
    lines += _asset_lines(made) if made else []
    lines += _check_lines(checks, {m.key: i for i, m in enumerate(made)})
    policy = policy_line(meta.get(STRATEGY_ASSET, {}), [c for c in checks if c.asset == GATE_ASSET])
    lines += [policy] if policy else []
    quarantine = meta.get(QUARANTINE_ASSET, {})
    if "quarantined_rows" in quarantine and "rows_read" in quarantine:
        lines.append(
            quarantine_line(int(quarantine["quarantined_rows"]), int(quarantine["rows_read"]))
        )
    verdict = meta.get(SEGMENTS_ASSET, {}).get("segmentation_verdict")
    lines += [segments_line(str(verdict))] if verdict is not None else []
    lines += [f"{label + ':':<10} {path}" for label, path in paths.items()]
    lines.append(published)
    return "\n".join(lines)
