"""Champion/challenger: a reproducible random holdout on the strategies, and its uplift.

Arms (docs/method.md, "Champion/challenger"): a borrower's draw is the first 53 bits of
``blake2b(experiment + "\\0" + Borrower_ID, digest_size=8)`` as a number in [0, 1). A borrower
whose champion strategy is eligible is in the challenger arm iff its draw < share, else in the
champion arm. The draw depends on the two strings alone: not on the run, the snapshot, the order
of the book, the other borrowers in it, nor the partition a row is in, so a borrower stays in its
arm for as long as the experiment keeps its name (a share raised later only adds borrowers to the
challenger arm).

Uplift: among the borrowers in the experiment at t whose loan was open then and resolved by
t+1, the Fully Recovered share of the challenger arm minus the champion arm's, with Newcombe's
hybrid score interval (Newcombe 1998, method 10: from the two Wilson intervals), and the
resolved borrowers per arm a two-sided test at ``significance`` with ``power`` needs to detect
the target uplift: n = (z_{1-a/2} sqrt(2 pbar qbar) + z_{1-b} sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2
(Fleiss, Levin & Paik 2003, eq. 4.14, without continuity correction).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from loan_pipeline.domain import (
    ARM_CHALLENGER,
    ARM_CHAMPION,
    ARMS,
    STRATEGIES,
    STRATEGY_SHORT,
)

FULLY_RECOVERED = "Fully Recovered"
_SEPARATOR = b"\0"  # between the experiment's name and the id: no two pairs hash the same text


def full_strategy(name: str) -> str:
    """The full strategy (``domain.STRATEGIES``) of a full or short name (``STRATEGY_SHORT``)."""
    for full in STRATEGIES:
        if name in (full, STRATEGY_SHORT[full]):
            return full
    raise ValueError(f"unknown strategy {name!r}; the strategies are {STRATEGIES}")


def arm_draws(borrower_ids, experiment: str) -> np.ndarray:
    """Each borrower's draw in [0, 1) for ``experiment`` (see the module docstring)."""
    if not experiment or "\0" in experiment:
        raise ValueError(f"an experiment needs a name without NUL characters, got {experiment!r}")
    prefix = hashlib.blake2b(experiment.encode() + _SEPARATOR, digest_size=8)
    out = np.empty(len(borrower_ids), dtype="float64")
    for i, borrower in enumerate(pd.Series(borrower_ids).astype(str)):
        h = prefix.copy()  # the name's part hashed once, each id added to a copy
        h.update(borrower.encode())
        # 53 bits: every value exact in a float64, the largest below 1
        out[i] = (int.from_bytes(h.digest(), "big") >> 11) * 2.0**-53
    return out


def assign_arms(borrower_ids, experiment: str, share: float) -> pd.Series:
    """``challenger`` where a borrower's draw < ``share``, else ``champion`` (every borrower
    eligible), indexed as ``borrower_ids`` when it is a Series."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    draws = arm_draws(borrower_ids, experiment)
    index = borrower_ids.index if isinstance(borrower_ids, pd.Series) else None
    arms = np.where(draws < share, ARM_CHALLENGER, ARM_CHAMPION)
    return pd.Series(arms, index=index, name="experiment_arm")


def check_experiment(challenger: str, eligible: list[str]) -> tuple[str, list[str]]:
    """The full names of an experiment's challenger and eligible strategies; an experiment whose
    challenger is one of the eligible strategies would compare a strategy with itself."""
    challenger = full_strategy(challenger)
    eligible = [full_strategy(s) for s in eligible]
    if not eligible:
        raise ValueError("an experiment needs at least one eligible champion strategy")
    if challenger in eligible:
        raise ValueError(
            f"the challenger strategy {challenger!r} is one of the eligible ones {eligible}: "
            "its borrowers would get the same strategy in both arms"
        )
    return challenger, eligible


def apply_experiment(
    table: pd.DataFrame, *, experiment: str, share: float, challenger: str, eligible: list[str]
) -> pd.DataFrame:
    """A strategy table (a book or one partition) with ``domain.EXPERIMENT_COLUMNS`` added:
    ``champion_strategy`` (the policy's strategy), ``experiment`` and ``experiment_arm`` (empty
    for a borrower in no experiment), and ``recovery_strategy`` the challenger strategy in the
    challenger arm. ``share`` 0: no experiment, the table's strategies unchanged (and no hashing).
    """
    from loan_pipeline.core.joins import text_from_codes

    champion = table["recovery_strategy"]
    n = len(table)
    if share > 0:
        challenger, eligible = check_experiment(challenger, eligible)
        in_experiment = champion.isin(eligible).to_numpy(dtype=bool)
        draws = np.ones(n)
        draws[in_experiment] = arm_draws(table["Borrower_ID"].array[in_experiment], experiment)
        in_challenger = in_experiment & (draws < share)
    else:
        in_experiment = in_challenger = np.zeros(n, dtype=bool)
    arm = np.where(in_challenger, 1, np.where(in_experiment, 0, 2))
    strategy = np.where(in_challenger, STRATEGIES.index(challenger) if share > 0 else 0, -1)
    codes = np.where(strategy >= 0, strategy, pd.Index(STRATEGIES).get_indexer(champion))
    return table.assign(
        recovery_strategy=text_from_codes(STRATEGIES, codes),
        champion_strategy=champion.array,
        experiment=text_from_codes([experiment, None], np.where(in_experiment, 0, 1)),
        experiment_arm=text_from_codes([*ARMS, None], arm),
    )


def experiment_audit(table: pd.DataFrame, challenger: str | None) -> pd.Series:
    """Of a strategy table (a book or one partition; ``partitions.sum_counts`` adds them up):
    the borrowers per arm (``arm:<name>``), and two counts that must be 0: challenger-arm rows
    without the ``challenger`` strategy, and other rows whose strategy is not the champion's."""
    arm = table["experiment_arm"]
    in_challenger = (arm == ARM_CHALLENGER).fillna(False).to_numpy(dtype=bool)
    strategy = table["recovery_strategy"].to_numpy(dtype=object)
    champion = table["champion_strategy"].to_numpy(dtype=object)
    return pd.Series(
        {
            **{f"arm:{a}": int((arm == a).fillna(False).sum()) for a in ARMS},
            "challenger_not_given_challenger": int(
                (in_challenger & (strategy != challenger)).sum()
            ),
            "others_not_given_champion": int((~in_challenger & (strategy != champion)).sum()),
        }
    ).astype("int64")


# --- the uplift, when the outcomes arrive --------------------------------------------------------


def newcombe_interval(
    k1: int, n1: int, k2: int, n2: int, z: float = 1.959964
) -> tuple[float, float, float]:
    """``k1/n1 - k2/n2`` and Newcombe's hybrid score interval of it (1998, method 10): from the
    Wilson interval of each share, so it stays within [-1, 1] and is sensible at small counts
    and shares near 0 or 1, where the Wald interval is not. n1, n2 > 0."""
    from loan_pipeline.core.chart_summaries import wilson_interval

    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = (
        (float(a[0]), float(b[0]))
        for a, b in (wilson_interval([k1], [n1], z), wilson_interval([k2], [n2], z))
    )
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def sample_size_per_arm(p1: float, p2: float, *, significance: float, power: float) -> int | None:
    """Borrowers per arm (equal arms) a two-sided test of two proportions at ``significance``
    needs to detect ``p1`` vs ``p2`` with ``power``: Fleiss, Levin & Paik's formula without
    continuity correction (module docstring), rounded up; None when p1 == p2."""
    from scipy.stats import norm

    if p1 == p2:
        return None
    mean = (p1 + p2) / 2
    z_a, z_b = norm.ppf(1 - significance / 2), norm.ppf(power)
    root = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    # a hair under an integer from the float arithmetic is that integer
    return math.ceil(root**2 / (p1 - p2) ** 2 - 1e-9)


UPLIFT_COLUMNS = [
    "experiment",
    "challenger_strategy",
    *(
        f"{arm}_{what}"
        for arm in ARMS
        for what in (
            "borrowers",
            "left_the_book",
            "resolved",
            "fully_recovered",
            "rate",
            "resolved_balance",
            "recovered_balance",
        )
    ),
    "uplift",
    "uplift_ci_low",
    "uplift_ci_high",
    "significant",
    "balance_uplift",
    "target_uplift",
    "needed_per_arm",
    "still_needed_champion",
    "still_needed_challenger",
]


def empty_uplift() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in UPLIFT_COLUMNS})


def experiment_at(previous: pd.DataFrame) -> str:
    """Why an earlier snapshot has no experiment to judge, or "" if it has one."""
    if "experiment_arm" not in previous.columns:
        return "the previous snapshot was recorded before experiments had arms"
    if previous["experiment_arm"].isna().all():
        return "no experiment ran at the previous snapshot"
    return ""


def uplift(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    *,
    significance: float,
    power: float,
    min_uplift: float | None,
) -> pd.DataFrame:
    """One row per experiment at t (``previous``: a history file's Borrower_ID,
    Outstanding_Loan_Amount, Recovery_Status, recovery_strategy, experiment, experiment_arm)
    judged at t+1 (``current``: Borrower_ID, Recovery_Status). Per arm: the borrowers in it
    with an open loan at t, those gone at t+1, resolved at t+1, and Fully Recovered; the rate
    (Fully Recovered / resolved), the balance at t of the resolved and of the Fully Recovered
    (the recovered balance: the book records no amounts recovered, so a partial recovery counts
    0). The uplift (challenger minus champion rate) with Newcombe's interval at 1 -
    ``significance``; the uplift of the recovered balance share; the resolved borrowers per arm
    needed to detect ``min_uplift`` (or, empty, the uplift observed) and those still needed."""
    from scipy.stats import norm

    z = float(norm.ppf(1 - significance / 2))
    was = previous[previous["experiment_arm"].notna() & previous["Recovery_Status"].isna()]
    after = current.set_index("Borrower_ID")["Recovery_Status"]
    rows = []
    for name, rows_of in was.groupby("experiment", sort=True):
        row: dict = {"experiment": name}
        challenger = rows_of.loc[rows_of["experiment_arm"] == ARM_CHALLENGER, "recovery_strategy"]
        row["challenger_strategy"] = challenger.iloc[0] if len(challenger) else None
        counts = {}
        for arm in ARMS:
            members = rows_of[rows_of["experiment_arm"] == arm]
            status = after.reindex(members["Borrower_ID"].to_numpy())
            stayed = status.index.isin(after.index)
            resolved = stayed & status.notna().to_numpy()
            full = resolved & (status == FULLY_RECOVERED).to_numpy()
            balance = members["Outstanding_Loan_Amount"].to_numpy(dtype="float64")
            counts[arm] = (int(resolved.sum()), int(full.sum()))
            row |= {
                f"{arm}_borrowers": len(members),
                f"{arm}_left_the_book": int((~stayed).sum()),
                f"{arm}_resolved": counts[arm][0],
                f"{arm}_fully_recovered": counts[arm][1],
                f"{arm}_rate": counts[arm][1] / counts[arm][0] if counts[arm][0] else np.nan,
                f"{arm}_resolved_balance": float(balance[resolved].sum()),
                f"{arm}_recovered_balance": float(balance[full].sum()),
            }
        (n2, k2), (n1, k1) = counts[ARM_CHAMPION], counts[ARM_CHALLENGER]
        both = n1 > 0 and n2 > 0
        d, low, high = newcombe_interval(k1, n1, k2, n2, z) if both else (np.nan,) * 3
        row |= {
            "uplift": d,
            "uplift_ci_low": low,
            "uplift_ci_high": high,
            "significant": bool(both and (low > 0 or high < 0)),
            "balance_uplift": _share(row, ARM_CHALLENGER) - _share(row, ARM_CHAMPION),
        }
        target = min_uplift if min_uplift is not None else (abs(d) if both else np.nan)
        needed = None
        if both and target > 0:
            p2 = k2 / n2
            # the target's direction is the observed one; clipped into the possible shares
            p1 = min(max(p2 + (target if d >= 0 else -target), 0.0), 1.0)
            needed = sample_size_per_arm(p1, p2, significance=significance, power=power)
        row |= {
            "target_uplift": target,
            "needed_per_arm": needed,
            "still_needed_champion": None if needed is None else max(0, needed - n2),
            "still_needed_challenger": None if needed is None else max(0, needed - n1),
        }
        rows.append(row)
    table = pd.DataFrame(rows, columns=UPLIFT_COLUMNS)
    for column in ("needed_per_arm", "still_needed_champion", "still_needed_challenger"):
        table[column] = table[column].astype("Int64")
    return table


def _share(row: dict, arm: str) -> float:
    """The arm's recovered balance over its resolved balance (NaN without a resolved balance)."""
    resolved = row[f"{arm}_resolved_balance"]
    return row[f"{arm}_recovered_balance"] / resolved if resolved > 0 else np.nan
