"""Risk score -> recovery strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loan_pipeline.domain import (
    POLICY_CAPACITY,
    POLICY_FALLBACK,
    POLICY_MODEL,
    RANKING_KEYS,
    STRATEGIES,
    STRATEGY_LEGAL,
    STRATEGY_SETTLEMENT,
)


def assign_strategy(scores: pd.Series, *, legal_above: float, settlement_from: float) -> pd.Series:
    """The notebook's bands: score > ``legal_above`` -> legal action; ``settlement_from`` <= score
    <= ``legal_above`` -> settlement offers; below -> automated reminders."""
    if settlement_from > legal_above:
        raise ValueError(
            f"settlement_from ({settlement_from}) must not exceed legal_above ({legal_above})"
        )
    s = scores.to_numpy(dtype="float64")
    chosen = np.select([s > legal_above, s >= settlement_from], [0, 1], default=2)
    return _text(STRATEGIES, chosen, scores.index, "recovery_strategy")


def _text(labels: list[str], codes: np.ndarray, index: pd.Index, name: str | None) -> pd.Series:
    """``labels[codes]`` as an Arrow-backed text Series (no Python string per borrower)."""
    from loan_pipeline.core.joins import text_from_codes

    return pd.Series(text_from_codes(labels, codes), index=index, name=name)


# The strategy each clause of the fallback policy leads to (the clauses in ``rules_based``'s
# order: legal on days, legal on missed payments, settlement on days, on missed, none).
_CLAUSE_STRATEGY = np.array([0, 0, 1, 1, 2])


def rules_based(
    loans: pd.DataFrame,
    *,
    legal_days: int,
    legal_missed: int,
    settlement_days: int,
    settlement_missed: int,
) -> tuple[pd.Series, pd.Series]:
    """The fallback when no model beats the base rate: a policy on arrears alone, and for each
    borrower the clause that decided (the first that holds).

    Days_Past_Due > ``legal_days`` or Num_Missed_Payments >= ``legal_missed`` -> legal action;
    Days_Past_Due > ``settlement_days`` or Num_Missed_Payments >= ``settlement_missed`` ->
    settlement offers; otherwise automated reminders. Returns (strategy, reason).
    """
    dpd = loans["Days_Past_Due"].to_numpy()
    missed = loans["Num_Missed_Payments"].to_numpy()
    clause = np.select(
        [
            dpd > legal_days,
            missed >= legal_missed,
            dpd > settlement_days,
            missed >= settlement_missed,
        ],
        [0, 1, 2, 3],
        default=4,
    )
    words = [
        f"Days_Past_Due > {legal_days}",
        f"Num_Missed_Payments >= {legal_missed}",
        f"Days_Past_Due > {settlement_days}",
        f"Num_Missed_Payments >= {settlement_missed}",
        f"Days_Past_Due <= {settlement_days} and Num_Missed_Payments < {settlement_missed}",
    ]
    strategy = _text(STRATEGIES, _CLAUSE_STRATEGY[clause], loans.index, "recovery_strategy")
    return strategy, _text(words, clause, loans.index, None)


def expected_loss(probability, balance) -> np.ndarray:
    """``probability x balance`` per borrower (a missing probability stays missing).

    With P(not fully recovered) this is the expected shortfall: it counts a loan that is not
    fully recovered as losing its whole outstanding balance, so it is an upper bound on the
    expected loss and a ranking key, not an estimate of the loss given default (a partial
    recovery loses less; the book records no recovered amounts to learn how much less)."""
    p = np.asarray(probability, dtype="float64")
    # + 0.0: a balance read as -0.0 gives 0.0, so every key sorts (and bins) as a number >= 0
    return p * np.asarray(balance, dtype="float64") + 0.0


def strategy_table(
    loans: pd.DataFrame,
    segments: pd.DataFrame,
    scores: pd.DataFrame,
    policy: str,
    *,
    legal_above: float,
    settlement_from: float,
    legal_days: int,
    legal_missed: int,
    settlement_days: int,
    settlement_missed: int,
) -> pd.DataFrame:
    """One row per borrower: ids, segment, scores, balance and expected loss, strategy, policy
    and the three reasons, from the loan book (ids, balance and arrears), the segments and the
    scores (a whole book, or one aligned partition of each). ``policy``: the score bands, or
    the rules-based fallback on arrears (``legal_days`` to ``settlement_missed``: its thresholds,
    as ``rules_based``'s) with the rule that fired
    as the reason. ``worklist_rank`` is left empty: only the capacity policy ranks
    (``capacity_strategies``, applied to this table)."""
    from loan_pipeline.core.joins import join_by_id, text_from_codes

    table = join_by_id(
        join_by_id(
            loans[
                [
                    "Borrower_ID",
                    "Loan_ID",
                    "Outstanding_Loan_Amount",
                    "Days_Past_Due",
                    "Num_Missed_Payments",
                ]
            ],
            segments,
        ),
        scores[["Borrower_ID", "risk_score", "p_written_off", "reason_1", "reason_2", "reason_3"]],
    )
    if policy == POLICY_MODEL:
        strategy = assign_strategy(
            table["risk_score"], legal_above=legal_above, settlement_from=settlement_from
        )
    else:
        strategy, reason = rules_based(
            table,
            legal_days=legal_days,
            legal_missed=legal_missed,
            settlement_days=settlement_days,
            settlement_missed=settlement_missed,
        )
        # the reasons are the rule that fired, not the (unused) model's
        table["reason_1"] = reason.array
        none = text_from_codes([None], np.zeros(len(table), dtype="int64"))
        table["reason_2"] = none
        table["reason_3"] = none
    balance = table.pop("Outstanding_Loan_Amount")
    table = table.drop(columns=["Days_Past_Due", "Num_Missed_Payments"])
    after = table.columns.get_loc("p_written_off") + 1
    table.insert(after, "Outstanding_Loan_Amount", balance.to_numpy(dtype="float64"))
    table.insert(after + 1, "expected_shortfall", expected_loss(table["risk_score"], balance))
    table.insert(after + 2, "expected_write_off", expected_loss(table["p_written_off"], balance))
    table.insert(after + 3, "worklist_rank", np.full(len(table), np.nan))
    table.insert(after + 4, "recovery_strategy", strategy.array)
    table.insert(
        after + 5,
        "policy",
        text_from_codes([policy], np.zeros(len(table), dtype="int64")),
    )
    return table


# --- the capacity policy: a ranked worklist --------------------------------------------------
#
# The order of the worklist is the ranking key, largest first, ties to the smaller Borrower_ID
# (text order), a borrower without a value of the key last. A rank is a place in the whole
# book, so on a Dask cluster it cannot be decided in one partition: each partition offers its
# first n borrowers (n = both capacities: no later borrower of it can be worked), the offers are
# merged n at a time (on the workers), and the n first of all are ranked in this process. A
# partition then looks its own borrowers up among them. Only 2 n rows at a time come here; the
# same borrowers, in the same order, whether the book is whole or in any partitions.

CANDIDATE_KEY = "_key"


def worklist_candidates(table: pd.DataFrame, key: str, n: int) -> pd.DataFrame:
    """The first ``n`` borrowers of ``table`` (a book or a partition) in worklist order, as
    ``Borrower_ID`` and the key (missing as -inf), in that order."""
    values = table[key].to_numpy(dtype="float64", na_value=np.nan)
    values = np.where(np.isnan(values), -np.inf, values)
    if n == 0:
        keep = np.zeros(len(values), dtype=bool)
    elif len(values) > n:
        # only the borrowers at or above the n-th largest key can be among the first n:
        # sorting them (ties to the id) is cheap; sorting a whole partition by text is not
        keep = values >= np.partition(values, len(values) - n)[len(values) - n]
    else:
        keep = np.ones(len(values), dtype=bool)
    # the ids stay Arrow text (no Python string per borrower)
    ids = pd.Series(table["Borrower_ID"].array[keep])
    offered = pd.DataFrame({"Borrower_ID": ids, CANDIDATE_KEY: values[keep]})
    offered = offered.sort_values(
        [CANDIDATE_KEY, "Borrower_ID"], ascending=[False, True], kind="stable"
    )
    return offered.head(n).reset_index(drop=True)


def merge_candidates(parts: list[pd.DataFrame], n: int) -> pd.DataFrame:
    """The first ``n`` of several partitions' ``worklist_candidates`` (the same shape again, so
    merges can be merged)."""
    return worklist_candidates(pd.concat(parts, ignore_index=True), CANDIDATE_KEY, n)


def worklist_ranks(table, key: str, n: int) -> pd.Series:
    """Rank 1..n of the first ``n`` borrowers of the whole ``table`` (pandas or Dask) in
    worklist order, indexed by Borrower_ID."""
    import functools

    from loan_pipeline.core.partitions import summarise

    first = summarise(
        worklist_candidates,
        functools.partial(merge_candidates, n=n),
        table,
        key,
        n,
        split_every=8,
    )
    return pd.Series(np.arange(1, len(first) + 1), index=pd.Index(first["Borrower_ID"]))


def assign_by_rank(
    table: pd.DataFrame, ranks: pd.Series, legal_capacity: int, settlement_capacity: int
) -> pd.DataFrame:
    """A book or a partition with the capacity policy applied: ``worklist_rank`` from ``ranks``
    (empty for a borrower not on the worklist), the first ``legal_capacity`` given legal action,
    the next ``settlement_capacity`` settlement offers, the rest automated reminders."""
    from loan_pipeline.core.joins import text_from_codes

    where = ranks.index.get_indexer(table["Borrower_ID"])
    on_list = where >= 0
    rank = np.zeros(len(table), dtype="int64")
    rank[on_list] = ranks.to_numpy()[where[on_list]]
    chosen = np.select(
        [rank > legal_capacity + settlement_capacity, rank > legal_capacity], [2, 1], default=0
    )
    chosen[~on_list] = 2
    return table.assign(
        # a float, empty (NaN) off the list: a nullable integer column would read back from
        # Parquet as float64, so a step in another process would get another dtype than one
        # handed the table in memory
        worklist_rank=np.where(on_list, rank, np.nan),
        recovery_strategy=text_from_codes(STRATEGIES, chosen),
        policy=text_from_codes([POLICY_CAPACITY], np.zeros(len(table), dtype="int64")),
    )


def band_counts(table) -> tuple[int, int]:
    """How many borrowers of ``table`` (pandas or Dask) have legal action and settlement."""
    from loan_pipeline.core.partitions import sum_counts, summarise, value_counts

    counts = summarise(value_counts, sum_counts, table, ["recovery_strategy"])
    return int(counts.get(STRATEGY_LEGAL, 0)), int(counts.get(STRATEGY_SETTLEMENT, 0))


def capacity_strategies(
    table, *, ranking_key: str, legal_capacity: int | None, settlement_capacity: int | None
):
    """``strategy_table``'s score-band table (pandas or Dask) under the capacity policy: the
    first ``legal_capacity`` borrowers by ``ranking_key`` given legal action, the next
    ``settlement_capacity`` settlement offers, the rest reminders; a capacity of None is the
    number the bands gave (the same workload, in expected-loss order). Returns the table and
    the two capacities used."""
    from loan_pipeline.core.partitions import is_dask, per_partition

    if ranking_key not in RANKING_KEYS:
        raise ValueError(f"ranking_key must be one of {RANKING_KEYS}, not {ranking_key!r}")
    if is_dask(table):  # computed once: the counts, the ranking and the assignment read it
        table = table.persist()
    if legal_capacity is None or settlement_capacity is None:
        legal, settlement = band_counts(table)
        legal_capacity = legal if legal_capacity is None else legal_capacity
        settlement_capacity = settlement if settlement_capacity is None else settlement_capacity
    ranks = worklist_ranks(table, ranking_key, legal_capacity + settlement_capacity)
    assigned = per_partition(assign_by_rank, table, ranks, legal_capacity, settlement_capacity)
    return assigned, (legal_capacity, settlement_capacity)


def loss_sums(table: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: borrowers, outstanding balance and expected losses, summed (a book or a
    partition; ``summaries.sum_frames`` adds partitions up)."""
    columns = ["Outstanding_Loan_Amount", "expected_shortfall", "expected_write_off"]
    grouped = table.groupby("recovery_strategy", observed=True)
    sums = grouped[columns].sum(min_count=1)
    sums.insert(0, "borrowers", grouped.size())
    return sums


# --- the policy and the table the collections team gets -----------------------------------------


def choose_policy(model, *, capacity: bool) -> str:
    """Where the strategies come from: the rules-based fallback on arrears whenever the risk
    ``model`` fails its gate (``RiskModel.usable``), else the worklist ranked by expected loss
    when ``capacity`` is asked for, else the score bands."""
    if not model.usable:
        return POLICY_FALLBACK
    return POLICY_CAPACITY if capacity else POLICY_MODEL


def fallback_warning(model, *, capacity: bool) -> str:
    """Why the strategies come from the fallback policy, for a ``model`` that fails its gate."""
    return (
        "the risk model "
        + ("does not beat the base rate" if not model.beats_baseline else "")
        + (" and " if not model.beats_baseline and not model.signs_agree else "")
        + ("has coefficients against the data" if not model.signs_agree else "")
        + ": strategies come from the rules-based fallback policy on arrears"
        + (" (not from the capacity ranking asked for)" if capacity else "")
    )


def recovery_table(
    loans,
    segments,
    scores,
    *,
    policy: str,
    legal_above: float,
    settlement_from: float,
    legal_days: int,
    legal_missed: int,
    settlement_days: int,
    settlement_missed: int,
    ranking_key: str,
    legal_capacity: int | None,
    settlement_capacity: int | None,
) -> tuple[object, dict]:
    """Every borrower's strategy under ``policy``: ``strategy_table`` (the score bands, or the
    fallback's thresholds ``legal_days`` to ``settlement_missed``), re-cut by rank under the
    capacity policy (``capacity_strategies``: ``ranking_key`` and the two capacities). The
    three tables are a whole book each, or (pandas or Dask) partitioned alike, each made from
    the loan book's partitions in order, so each partition joins its own rows: no shuffle.
    Returns the table and, under the capacity policy, the ranking key and capacities used."""
    from loan_pipeline.core.partitions import per_partition

    table = per_partition(
        strategy_table,
        loans,
        segments,
        scores,
        POLICY_FALLBACK if policy == POLICY_FALLBACK else POLICY_MODEL,
        legal_above=legal_above,
        settlement_from=settlement_from,
        legal_days=legal_days,
        legal_missed=legal_missed,
        settlement_days=settlement_days,
        settlement_missed=settlement_missed,
    )
    if policy != POLICY_CAPACITY:
        return table, {}
    # the bands' table re-cut by rank (an empty capacity: the bands' count, so the same
    # workload goes to the largest expected losses)
    table, (legal, settlement) = capacity_strategies(
        table,
        ranking_key=ranking_key,
        legal_capacity=legal_capacity,
        settlement_capacity=settlement_capacity,
    )
    return table, {
        "ranking_key": ranking_key,
        "legal_capacity": legal,
        "settlement_capacity": settlement,
    }


def strategy_summary(table) -> tuple[dict[str, int], pd.DataFrame, pd.DataFrame]:
    """Of a strategy table (pandas or Dask): borrowers per strategy, most first; per segment
    and strategy, a row per segment; and ``loss_sums`` per strategy."""
    from loan_pipeline.core.partitions import sum_counts, summarise, value_counts
    from loan_pipeline.core.summaries import sum_frames

    counts = summarise(value_counts, sum_counts, table, ["segment_name", "recovery_strategy"])
    by_strategy = (
        counts.groupby(level="recovery_strategy").sum().sort_values(ascending=False).to_dict()
    )
    by_segment = counts.unstack(fill_value=0).reset_index()
    losses = summarise(loss_sums, sum_frames, table).reset_index()
    return by_strategy, by_segment, losses


# --- what the checks on recovery_strategies read ---------------------------------------------


def audit_counts(table: pd.DataFrame) -> pd.Series:
    """Of a strategy table (a book or one partition; ``partitions.sum_counts`` adds partitions
    up): its rows, those with one of the three strategies, those whose strategy has no reason
    (reason_1 empty), and the rows of each policy (``policy:<name>``)."""
    policies = table["policy"].value_counts(dropna=False)
    return pd.concat(
        [
            pd.Series(
                {
                    "rows": len(table),
                    "with_strategy": int(table["recovery_strategy"].isin(STRATEGIES).sum()),
                    "without_reason": int(table["reason_1"].isna().sum()),
                }
            ),
            pd.Series(policies.to_numpy(), index=[f"policy:{p}" for p in policies.index]),
        ]
    ).astype("int64")


def expected_policy(model, *, assignment: str) -> tuple[str, str]:
    """The policy the strategies must come from, and why, read from the model's two gates
    (``beats_baseline``, ``signs_agree``) and the configured ``assignment`` directly: the
    check on recovery_strategies compares the table's ``policy`` column with this, so a change
    to ``choose_policy`` that broke the rule would show."""
    if not model.beats_baseline:
        return POLICY_FALLBACK, "the risk model does not beat the base rate (its gate failed)"
    if not model.signs_agree:
        return POLICY_FALLBACK, "a coefficient contradicts the data (the sign check failed)"
    if assignment == "capacity":
        return POLICY_CAPACITY, "the model passed its gates and assignment is 'capacity'"
    return POLICY_MODEL, f"the model passed its gates and assignment is {assignment!r}"
