"""Snapshot t+1 of a loan book: the same borrowers one collections cycle (30 days) later.

``follow_up(book, seed)`` takes a book with the generator's 21 columns (snapshot t) and returns
the next cycle's book with the same columns and dtypes as ``generate_loan_book``. Open loans
(blank ``Recovery_Status``) move between arrears buckets by ``TRANSITIONS``; some resolve, their
outcome drawn from the generator's planted relation, optionally shifted by a planted strategy
effect. docs/sample_data.md ("Follow-up snapshots") states every rule; in short:

* bucket of a loan: ``resolved`` if ``Recovery_Status`` is set, else by ``Days_Past_Due``
  (``BUCKET_DAYS``; more than 90 days is ``90+``);
* a resolved loan is absorbing: its row is copied unchanged;
* an open loan draws its next bucket from its row of ``TRANSITIONS``. Still open: a new
  ``Days_Past_Due`` uniform inside the new bucket; it "paid" this cycle if the new bucket is
  ``current`` or better than the old one, else "missed". Paid: balance minus one
  ``Monthly_EMI``; missed: balance plus a month of interest (``Interest_Rate / 1200``), capped at
  ``Loan_Amount``, and one more missed payment (at least 1 in arrears). ``Monthly_EMI`` stays
  ``balance / Loan_Tenure``; a loan in arrears at t+1 has one more collection attempt.
  Resolves: the features stay as at t; ``Recovery_Status`` is drawn from
  ``outcome_probabilities`` (the planted relation) at t, the outcome-side columns as the
  generator draws them for that status;
* ``strategy_effect[s]`` = d: for a loan resolving this cycle whose borrower has strategy s,
  ``P(Fully Recovered)`` becomes ``clip(p + d, 0, 1)``, the other two outcomes scaled to share
  the rest in their old ratio;
* ``vanish``: ``round(vanish * open loans)`` open borrowers (not the one carrying the highest id
  number) leave the book; ``new``: borrowers drawn by the generator, open, with the next unused
  id numbers, appended.

Determinism: the output is a function of ``(book, seed, options)``. Each kind of draw has its
own random stream, one uniform per input row in book order, so the draws of one loan do not
depend on the options: a row that stays has the same t+1 values whatever ``vanish`` and
``new`` are, and a strategy effect changes only the status (and outcome-side columns) of loans
whose uniform falls between the old and the new ``P(Fully Recovered)``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# the buckets are the pipeline's too (the history files, the roll rates): said once, in
# core.arrears, and re-exported here for the follow-up's users
from loan_pipeline.core.arrears import (  # noqa: F401
    BUCKET_DAYS,
    BUCKETS,
    RESOLVED,
    arrears_bucket,
    bucket_codes,
)
from loan_pipeline.core.generator import (
    COLLECTION_METHODS,
    COLUMNS,
    DEFAULT_SIGNAL,
    LEGAL_ACTIONS,
    RECOVERY_STATUSES,
    SCHEMA,
    burden_score,
    draw_outcome_side,
    draw_status,
    generate_loan_book,
    recovery_probabilities,
    table_to_frame,
    write_tables,
)
from loan_pipeline.domain import STRATEGIES, STRATEGY_SHORT

CYCLE_DAYS = 30  # one cycle between snapshots (a monthly instalment)

# One cycle's moves: row = bucket at t, column = bucket at t+1, in BUCKETS order. Plausible
# monthly collections figures: the roll forward to the next worse bucket rises with arrears
# (8, 28, 44, 52 %; 75 % of 90+ stay there), cures to current fall with it (35, 15, 6, 2 %), a
# missed instalment moves a loan at most one bucket on, and resolution (paid off, settled or
# written off) rises from 2 % to 20 % at 90+. Resolved is absorbing.
TRANSITIONS = pd.DataFrame(
    [
        [0.90, 0.08, 0.00, 0.00, 0.00, 0.02],
        [0.35, 0.33, 0.28, 0.00, 0.00, 0.04],
        [0.15, 0.10, 0.25, 0.44, 0.00, 0.06],
        [0.06, 0.03, 0.05, 0.26, 0.52, 0.08],
        [0.02, 0.00, 0.01, 0.02, 0.75, 0.20],
        [0.00, 0.00, 0.00, 0.00, 0.00, 1.00],
    ],
    index=pd.Index(BUCKETS, name="from_bucket"),
    columns=pd.Index(BUCKETS, name="to_bucket"),
)
assert np.allclose(TRANSITIONS.sum(axis=1), 1.0)

# Random streams of a follow-up: SeedSequence(seed, spawn_key=(_KEY, stream)). _KEY keeps them
# apart from the generator's (block, stream) keys for the same seed.
_KEY = 0x464F4C4C  # "FOLL"
_MOVE_STREAM, _OUTCOME_STREAM, _VANISH_STREAM, _NEW_STREAM = 0, 1, 2, 3

_ID_NUMBER = {"Borrower_ID": r"^BRW_(?P<n>\d+)$", "Loan_ID": r"^LN_(?P<n>\d+)$"}
SPREADSHEET_GUARD = "'"  # what the strategies export may put before a cell (core.export)


def _bucket_codes(book: pd.DataFrame) -> np.ndarray:
    return bucket_codes(book["Days_Past_Due"].to_numpy(), book["Recovery_Status"].notna())


def strategy_name(name: str) -> str:
    """The full strategy name (``domain.STRATEGIES``) for ``name``: a full name, a short one
    (``STRATEGY_SHORT``) or the start of one full name, any case ("Settlement offers")."""
    wanted = name.strip().casefold()
    for full in STRATEGIES:
        if wanted in (full.casefold(), STRATEGY_SHORT[full].casefold()):
            return full
    matches = [full for full in STRATEGIES if wanted and full.casefold().startswith(wanted)]
    if len(matches) != 1:
        raise ValueError(f"unknown strategy {name!r}; the strategies are {STRATEGIES}")
    return matches[0]


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_KEY, stream)))


def _validate(book, seed, strategy_effect, strategies, vanish, new, signal) -> None:
    missing = [c for c in COLUMNS if c not in book.columns]
    if missing:
        raise ValueError(f"the book lacks the columns {missing}")
    if book["Borrower_ID"].duplicated().any():
        raise ValueError("the book's Borrower_ID values are not unique")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= vanish <= 1.0:
        raise ValueError(f"vanish must be a share in [0, 1], got {vanish!r}")
    if isinstance(new, bool) or not (
        (isinstance(new, (int, np.integer)) and new >= 0)
        or (isinstance(new, float) and 0.0 <= new <= 1.0)
    ):
        raise ValueError(f"new must be a count (int >= 0) or a share (float in [0, 1]): {new!r}")
    if not math.isfinite(signal) or signal < 0:
        raise ValueError(f"signal must be a finite number >= 0, got {signal!r}")
    if strategy_effect and strategies is None:
        raise ValueError("a strategy effect needs the borrowers' strategies")
    for name, effect in (strategy_effect or {}).items():
        if not (math.isfinite(effect) and -1.0 <= effect <= 1.0):
            raise ValueError(f"the effect of {name!r} must be in [-1, 1], got {effect!r}")


def _effects(
    book: pd.DataFrame, strategies: pd.DataFrame | None, strategy_effect: Mapping[str, float]
) -> np.ndarray:
    """Each row's planted change in P(Fully Recovered): its borrower's strategy's effect, 0
    for a borrower without a strategy or with a strategy that has none."""
    effects = np.zeros(len(book))
    if strategies is None:
        return effects
    for column in ("Borrower_ID", "recovery_strategy"):
        if column not in strategies.columns:
            raise ValueError(f"the strategies lack the column {column!r}")
    ids = strategies["Borrower_ID"].astype(str).str.removeprefix(SPREADSHEET_GUARD)
    if ids.duplicated().any():
        raise ValueError("the strategies name a borrower more than once")
    book_ids = book["Borrower_ID"].astype(str)
    unknown = ids[~ids.isin(book_ids)]
    if len(unknown):
        raise ValueError(
            f"{len(unknown)} borrower(s) of the strategies are not in the book, e.g. "
            f"{unknown.head(3).tolist()}"
        )
    by_name = {strategy_name(name): float(d) for name, d in strategy_effect.items()}
    per_borrower = pd.Series(
        strategies["recovery_strategy"].map(by_name).fillna(0.0).to_numpy(), index=ids.to_numpy()
    )
    return per_borrower.reindex(book_ids.to_numpy()).fillna(0.0).to_numpy()


def outcome_probabilities(book: pd.DataFrame, signal: float = DEFAULT_SIGNAL) -> np.ndarray:
    """(n, 3) probabilities of Fully Recovered / Partially Recovered / Written Off for each loan
    of ``book`` should it resolve: the generator's planted relation on its columns as they are
    (a follow-up draws a resolving loan's outcome from these at t, before any strategy effect).
    """
    columns = ["Days_Past_Due", "Num_Missed_Payments", "Monthly_EMI", "Monthly_Income"]
    columns += ["Outstanding_Loan_Amount", "Loan_Amount", "Collateral_Value"]
    return recovery_probabilities(burden_score(*(book[c].to_numpy() for c in columns)), signal)


def shifted_probabilities(probs: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """``probs`` (n, 3) with P(Fully Recovered) moved by ``effect`` and clipped to [0, 1]; the
    Partially Recovered and Written Off shares scaled to fill the rest in their old ratio (all of
    it to Partially Recovered where both were 0)."""
    full = np.clip(probs[:, 0] + effect, 0.0, 1.0)
    rest_before = probs[:, 1] + probs[:, 2]
    rest = 1.0 - full
    with np.errstate(invalid="ignore", divide="ignore"):
        partial = np.where(rest_before > 0, probs[:, 1] * rest / rest_before, rest)
    return np.column_stack([full, partial, rest - partial])


def _id_numbers(book: pd.DataFrame) -> np.ndarray:
    """(n, 2) numbers n of each row's ``BRW_n`` and ``LN_n`` ids; -1 for an id of another form."""
    numbers = []
    for column, pattern in _ID_NUMBER.items():
        ids = pa.array(book[column].astype(str).to_numpy(), type=pa.string())
        found = pc.struct_field(pc.extract_regex(ids, pattern), [0])
        numbers.append(pc.fill_null(pc.cast(found, pa.int64()), -1).to_numpy())
    return np.column_stack(numbers) if numbers[0].size else np.zeros((0, 2), dtype=np.int64)


def _vanished(book: pd.DataFrame, is_open: np.ndarray, vanish: float, seed: int) -> np.ndarray:
    """The rows that leave: the ``round(vanish * open loans)`` eligible open rows with the
    smallest uniforms of the vanish stream. The rows holding the book's highest id number are
    not eligible: they carry it to the next snapshot, so that a later follow-up's new ids never
    reuse the id of a borrower who left."""
    keys = _rng(seed, _VANISH_STREAM).random(len(book))
    numbers = _id_numbers(book)
    eligible = is_open & ~(numbers == numbers.max(initial=0)).any(axis=1)
    count = min(_round_half_up(vanish * int(is_open.sum())), int(eligible.sum()))
    order = np.argsort(np.where(eligible, keys, np.inf), kind="stable")
    gone = np.zeros(len(book), dtype=bool)
    gone[order[:count]] = True
    return gone


def _new_borrowers(book: pd.DataFrame, new: int | float, seed: int, signal: float):
    """The new borrowers: generator rows (all open) numbered after the book's highest id
    number (of ``BRW_n`` and ``LN_n`` ids; from 1 if there is none)."""
    count = new if isinstance(new, (int, np.integer)) else _round_half_up(new * len(book))
    new_seed = int(np.random.SeedSequence(seed, spawn_key=(_KEY, _NEW_STREAM)).generate_state(1)[0])
    rows = generate_loan_book(int(count), seed=new_seed, signal=signal, open_fraction=1.0)
    if count:
        numbers = np.arange(1, len(rows) + 1) + max(int(_id_numbers(book).max(initial=0)), 0)
        rows["Borrower_ID"] = [f"BRW_{n}" for n in numbers]
        rows["Loan_ID"] = [f"LN_{n}" for n in numbers]
    return rows


def _move_open(book: pd.DataFrame, old: np.ndarray, new: np.ndarray, u_dpd: np.ndarray):
    """The columns a cycle changes, at t+1: moved for the loans still open at t+1 (``new`` below
    ``RESOLVED``), as in ``book`` for the others."""
    col = {c: book[c].to_numpy() for c in book.columns}
    bucket = np.minimum(new, RESOLVED - 1)
    low = np.array([lo for lo, _ in BUCKET_DAYS])[bucket]
    high = np.array([hi for _, hi in BUCKET_DAYS])[bucket]
    paid = (new == 0) | (new < old)
    arrears = new > 0
    missed = col["Num_Missed_Payments"] + ~paid
    balance = np.where(
        paid,
        np.maximum(np.round(col["Outstanding_Loan_Amount"] - col["Monthly_EMI"], 2), 0.0),
        np.minimum(
            np.round(col["Outstanding_Loan_Amount"] * (1.0 + col["Interest_Rate"] / 1200.0), 2),
            col["Loan_Amount"],
        ),
    )
    moved = {
        "Days_Past_Due": low + np.floor(u_dpd * (high - low + 1)).astype(np.int64),
        "Num_Missed_Payments": np.where(arrears, np.maximum(missed, 1), missed),
        "Outstanding_Loan_Amount": balance,
        "Monthly_EMI": np.round(balance / col["Loan_Tenure"], 2),
        "Collection_Attempts": col["Collection_Attempts"] + arrears,
    }
    stays_open = new < RESOLVED
    return {c: np.where(stays_open, values, col[c]) for c, values in moved.items()}


def follow_up(
    book: pd.DataFrame,
    seed: int,
    *,
    strategies: pd.DataFrame | None = None,
    strategy_effect: Mapping[str, float] | None = None,
    vanish: float = 0.0,
    new: int | float = 0,
    signal: float = DEFAULT_SIGNAL,
) -> pd.DataFrame:
    """The book one cycle later (see the module docstring and docs/sample_data.md).

    ``strategies``: Borrower_ID and recovery_strategy (the pipeline's recovery_strategies table
    or its CSV export; a leading ``'`` on an id is removed); ``strategy_effect``: strategy name
    (see ``strategy_name``) -> change in P(Fully Recovered) of its loans resolving this cycle;
    ``vanish``: share of the open loans whose borrowers leave; ``new``: new borrowers, a count
    (int) or a share of the book's rows (float); ``signal``: the planted relation's strength.
    """
    _validate(book, seed, strategy_effect, strategies, vanish, new, signal)
    book = book[COLUMNS].reset_index(drop=True)
    n = len(book)
    old = _bucket_codes(book)
    is_open = old < RESOLVED

    moves = _rng(seed, _MOVE_STREAM)
    u_move, u_dpd = moves.random(n), moves.random(n)
    cumulative = TRANSITIONS.to_numpy().cumsum(axis=1)
    cumulative[:, -1] = 1.0
    new_bucket = (u_move[:, None] >= cumulative[old]).sum(axis=1)
    columns = _move_open(book, old, new_bucket, u_dpd)

    resolves = is_open & (new_bucket == RESOLVED)
    outcome = _rng(seed, _OUTCOME_STREAM)
    u_status, u_attempts, u_method, u_legal = (outcome.random(n) for _ in range(4))
    effects = _effects(book, strategies, strategy_effect or {})
    probs = shifted_probabilities(outcome_probabilities(book, signal), effects)
    status = draw_status(u_status, probs)
    attempts, method, legal = draw_outcome_side(status, u_attempts, u_method, u_legal)

    nxt = book.copy()
    for column, values in columns.items():
        nxt[column] = values
    nxt.loc[resolves, "Recovery_Status"] = np.asarray(RECOVERY_STATUSES, dtype=object)[
        status[resolves]
    ]
    nxt.loc[resolves, "Collection_Attempts"] = attempts[resolves]
    nxt.loc[resolves, "Collection_Method"] = np.asarray(COLLECTION_METHODS, dtype=object)[
        method[resolves]
    ]
    nxt.loc[resolves, "Legal_Action_Taken"] = np.asarray(LEGAL_ACTIONS, dtype=object)[
        legal[resolves]
    ]

    if vanish:
        nxt = nxt[~_vanished(book, is_open, vanish, seed)]
    if new:
        nxt = pd.concat([nxt, _new_borrowers(book, new, seed, signal)], ignore_index=True)
    return table_to_frame(pa.Table.from_pandas(nxt, schema=SCHEMA, preserve_index=False))


def read_book(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A loan-book CSV as the generator writes it, as ``generate_loan_book`` returns it."""
    options = pacsv.ConvertOptions(
        column_types=SCHEMA, include_columns=COLUMNS, null_values=[""], strings_can_be_null=True
    )
    return table_to_frame(pacsv.read_csv(Path(path), convert_options=options))


def read_strategies(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Borrower_ID and recovery_strategy of a strategies CSV (the pipeline's export)."""
    return pd.read_csv(
        path, usecols=["Borrower_ID", "recovery_strategy"], dtype=str, keep_default_na=False
    )


def parse_effect(text: str) -> tuple[str, float]:
    """``"NAME=VALUE"`` (the CLI's ``--strategy-effect``) as (full strategy name, value)."""
    name, sep, value = text.rpartition("=")
    if not sep:
        raise ValueError(f"a strategy effect is NAME=VALUE, got {text!r}")
    return strategy_name(name), float(value)


def parse_new(text: str) -> int | float:
    """The CLI's ``--new``: a count ("50") or, with a decimal point, a share ("0.05")."""
    return float(text) if "." in text else int(text)


def cycle_counts(previous: pd.DataFrame, nxt: pd.DataFrame) -> dict[str, int]:
    """Borrowers of ``nxt`` (rows), those who left and arrived since ``previous``, and the loans
    open in ``previous`` and resolved in ``nxt``."""
    before = previous.set_index("Borrower_ID")["Recovery_Status"]
    after = nxt.set_index("Borrower_ID")["Recovery_Status"]
    stayed = before.index.intersection(after.index)
    return {
        "rows": len(nxt),
        "vanished": len(before.index.difference(after.index)),
        "new": len(after.index.difference(before.index)),
        "resolved": int((before[stayed].isna() & after[stayed].notna()).sum()),
    }


def write_follow_up(
    path: str | os.PathLike[str],
    previous: str | os.PathLike[str],
    seed: int,
    *,
    strategies: str | os.PathLike[str] | None = None,
    strategy_effect: list[str],
    vanish: float | None = None,
    new: str | None = None,
    signal: float,
) -> tuple[Path, str]:
    """The CLI's follow-up: read ``previous``, write ``follow_up`` of it to ``path``; return the
    path and a summary of the cycle. Options left None take ``follow_up``'s defaults."""
    book = read_book(previous)
    options = {"vanish": vanish, "new": None if new is None else parse_new(new)}
    effect = dict(parse_effect(text) for text in strategy_effect)
    nxt = follow_up(
        book,
        seed,
        strategies=None if strategies is None else read_strategies(strategies),
        strategy_effect=effect,
        signal=signal,
        **{k: v for k, v in options.items() if v is not None},
    )
    written = write_tables(path, iter([pa.Table.from_pandas(nxt, SCHEMA, preserve_index=False)]))
    counts = cycle_counts(book, nxt)
    summary = (
        f"{counts['rows']} rows ({counts['resolved']} resolved this cycle, "
        f"{counts['vanished']} vanished, {counts['new']} new)"
    )
    return written, summary


def add_follow_up_arguments(parser: argparse.ArgumentParser) -> None:
    """The CLI's follow-up options (``loan_pipeline.sample``); their defaults are
    ``follow_up``'s, so they default to None here."""
    follow = parser.add_argument_group(
        "follow-up", "write snapshot t+1 of PREVIOUS (docs/sample_data.md, Follow-up snapshots)"
    )
    follow.add_argument("--follow-up", type=Path, metavar="PREVIOUS", help="the book at t (CSV)")
    follow.add_argument(
        "--strategies",
        type=Path,
        help="CSV with Borrower_ID and recovery_strategy (the pipeline's recovery_strategies "
        "export) for --strategy-effect",
    )
    follow.add_argument(
        "--strategy-effect",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change in P(Fully Recovered) of loans resolving under strategy NAME (repeatable)",
    )
    follow.add_argument("--vanish", type=float, help="share of open borrowers who leave (0)")
    follow.add_argument(
        "--new", help="new borrowers: a count (50) or a share of the book's rows (0.05) (0)"
    )


def write_follow_up_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """Write the follow-up the parsed options ask for and say what changed."""
    if args.rows is not None or args.open_fraction is not None:
        parser.error("--rows and --open-fraction do not apply to --follow-up")
    path, summary = write_follow_up(
        args.out,
        args.follow_up,
        args.seed,
        strategies=args.strategies,
        strategy_effect=args.strategy_effect,
        vanish=args.vanish,
        new=args.new,
        signal=args.signal,
    )
    print(f"wrote {summary} to {path}")
    return path
