"""Seeded synthetic loan book with a planted, documented recovery signal.

The generator writes a book with the same 21 columns, in the same order, as the reference
data set ``loan-recovery.csv`` (see ``COLUMNS``), with the same value ranges and category
sets and roughly the same marginal shares. Unlike the reference, the outcome
(``Recovery_Status``) is drawn from a known model of the borrower's arrears and burden, so
that models have something real to find and tests can check that they find it.

Feature columns (drawn independently of each other unless stated)
-----------------------------------------------------------------
* ``Borrower_ID`` / ``Loan_ID``: ``BRW_{i}`` / ``LN_{i}`` for i = 1..rows (global, unique).
* ``Age``: uniform integer 21-64.  ``Gender``: Male 62 %, Female 38 %.
* ``Employment_Type``: Salaried 58 %, Self-Employed 31 %, Business Owner 11 %.
* ``Monthly_Income``: uniform integer 15,000-250,000.  ``Num_Dependents``: uniform 0-3.
* ``Loan_Amount``: uniform integer 50,000-2,000,000.
* ``Loan_Tenure`` (months): 12/24/36/48/60/72 with shares 9/12/19/22/22/16 %.
* ``Interest_Rate``: uniform 5-18, rounded to 2 decimals.
* ``Loan_Type``: Personal 44 %, Home 29 %, Auto 17 %, Business 10 %.
* ``Collateral_Value``: 0 for Personal loans, else ``Loan_Amount * U(0.5, 1.5)`` (2 decimals).
* ``Outstanding_Loan_Amount``: ``Loan_Amount * U(0.1, 1.0)`` (2 decimals).
* ``Monthly_EMI``: ``round(Outstanding_Loan_Amount / Loan_Tenure, 2)`` (the identity that
  holds in the reference file).
* ``Payment_History``: On-Time 61 %, Delayed 28 %, Missed 11 %.
* ``Num_Missed_Payments``: uniform 0-3 for On-Time and Delayed rows; for Missed rows uniform
  0-3 with probability 0.4, else uniform 4-12 (as in the reference, On-Time rows can have
  missed payments).
* ``Days_Past_Due``: 0 when there are no missed payments, else uniform integer 1-180; a further
  0.5 % of rows with missed payments get 0 days past due (the reference has such rows).

Planted relation (the outcome)
------------------------------
Each feature below is standardised with FIXED constants (population mean and standard
deviation of the generating distribution, so the score does not depend on the sample or on
chunking)::

    z_dpd       = (Days_Past_Due - 69.0) / 59.5
    z_missed    = (Num_Missed_Payments - 1.93) / 2.06
    z_emi       = (ln(Monthly_EMI / Monthly_Income) + 2.47) / 1.31
    z_share     = (Outstanding_Loan_Amount / Loan_Amount - 0.55) / 0.26
    z_uncovered = (uncovered - 0.455) / 0.487,
                  uncovered = 1 - min(Collateral_Value / Outstanding_Loan_Amount, 1)

    burden = 0.8 z_dpd + 0.6 z_missed + 0.5 z_emi + 0.5 z_share + 0.4 z_uncovered

(``burden`` has mean ~0 and variance ``BURDEN_VAR`` = 2.21.) The EMI-to-income ratio
enters on the log scale because it is heavily right-skewed; ``uncovered`` is the share of the
outstanding balance not covered by collateral (1 for every Personal loan).

``Recovery_Status`` follows an ordinal (cumulative) logit in ``s * burden``, where ``s`` is the
``signal`` parameter and ``sigma(x) = 1 / (1 + exp(-x))``::

    P(Fully Recovered)                       = sigma(theta_1 - s * burden)
    P(Fully Recovered or Partially Recovered) = sigma(theta_2 - s * burden)
    theta_k = theta_k0 * sqrt(1 + pi * s**2 * BURDEN_VAR / 8)
    theta_10 = logit(0.59) = 0.364,  theta_20 = logit(0.90) = 2.197

so higher burden means more Partially Recovered and Written Off. The ``sqrt`` factor (the
probit approximation of the logistic-normal integral) keeps the marginal shares close to
59 % / 31 % / 10 % for every ``signal``. With ``signal = 0`` the outcome is independent of
every feature; with ``signal = 1`` the true model separates "not Fully Recovered" with ROC AUC
~0.81 and a logistic regression on the raw arrears columns reaches ~0.79. ``Age``, ``Gender``,
``Employment_Type``, ``Num_Dependents``, ``Interest_Rate``, ``Loan_Tenure`` (other than
through the EMI) and ``Payment_History`` (other than through the missed payments) have no
direct effect.

Outcome-side (leakage) columns, drawn AFTER the outcome and dependent on it
--------------------------------------------------------------------------
* ``Collection_Attempts``: Fully Recovered uniform 0-3; Partially Recovered uniform 0-10;
  Written Off 0-10 with weight ``1 + k/5`` (skewed high).
* ``Collection_Method`` (Calls / Legal Notice / Debt Collectors / Settlement Offer):
  Fully Recovered 32/20/23/25 %, Partially Recovered 20/25/27/28 %, Written Off 10/40/30/20 %.
* ``Legal_Action_Taken``: "Yes" only for Written Off rows, with probability 0.65 when the
  method is Legal Notice and 0.40 otherwise (about half of the write-offs); "No" elsewhere.

Open loans
----------
A share ``open_fraction`` of rows (independent Bernoulli draws) is "open": ``Recovery_Status``
is blank (null; an empty CSV field). Their outcome-side columns are filled with plausible
in-progress values that carry NO information about the hidden outcome: Collection_Attempts
uniform 0-5, Collection_Method uniform over the four methods, Legal_Action_Taken "No"
(so "Yes" still implies Written Off).

Determinism and chunking
------------------------
Rows are generated in fixed random blocks of ``BLOCK_ROWS`` rows; block ``b`` uses generators
seeded by ``SeedSequence(seed, spawn_key=(b, stream))`` with separate streams for the features,
the outcome and the open-loan mask. Output therefore depends only on ``(rows, seed, signal,
open_fraction)``, never on ``chunk_rows``; and for a given ``(rows, seed)`` the feature
columns are identical for every ``signal`` and ``open_fraction`` (the outcome is coupled
through the same uniforms too, and the open rows for a smaller ``open_fraction`` are a subset
of those for a larger one).
"""

from __future__ import annotations

import argparse
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from loan_pipeline.schemas import LOAN_BOOK_COLUMNS

COLUMNS: list[str] = list(LOAN_BOOK_COLUMNS)  # the 21 columns in file order

SCHEMA = pa.schema(
    [
        ("Borrower_ID", pa.string()),
        ("Age", pa.int64()),
        ("Gender", pa.string()),
        ("Employment_Type", pa.string()),
        ("Monthly_Income", pa.int64()),
        ("Num_Dependents", pa.int64()),
        ("Loan_ID", pa.string()),
        ("Loan_Amount", pa.int64()),
        ("Loan_Tenure", pa.int64()),
        ("Interest_Rate", pa.float64()),
        ("Loan_Type", pa.string()),
        ("Collateral_Value", pa.float64()),
        ("Outstanding_Loan_Amount", pa.float64()),
        ("Monthly_EMI", pa.float64()),
        ("Payment_History", pa.string()),
        ("Num_Missed_Payments", pa.int64()),
        ("Days_Past_Due", pa.int64()),
        ("Recovery_Status", pa.string()),
        ("Collection_Attempts", pa.int64()),
        ("Collection_Method", pa.string()),
        ("Legal_Action_Taken", pa.string()),
    ]
)
assert SCHEMA.names == COLUMNS

# The planted relation's strength when none is given (the CLI's, the API's, the follow-up's).
DEFAULT_SIGNAL = 1.0

# Random-stream block size: part of the definition of the output, do not change lightly.
BLOCK_ROWS = 100_000
DEFAULT_CHUNK_ROWS = 500_000

# --- category sets and shares -------------------------------------------------------------
GENDERS = ["Male", "Female"]
GENDER_P = [0.62, 0.38]
EMPLOYMENT_TYPES = ["Salaried", "Self-Employed", "Business Owner"]
EMPLOYMENT_P = [0.58, 0.31, 0.11]
TENURES = np.array([12, 24, 36, 48, 60, 72], dtype=np.int64)
TENURE_P = [0.09, 0.12, 0.19, 0.22, 0.22, 0.16]
LOAN_TYPES = ["Personal", "Home", "Auto", "Business"]
LOAN_TYPE_P = [0.44, 0.29, 0.17, 0.10]
PAYMENT_HISTORIES = ["On-Time", "Delayed", "Missed"]
PAYMENT_HISTORY_P = [0.61, 0.28, 0.11]
RECOVERY_STATUSES = ["Fully Recovered", "Partially Recovered", "Written Off"]
COLLECTION_METHODS = ["Calls", "Legal Notice", "Debt Collectors", "Settlement Offer"]
LEGAL_ACTIONS = ["No", "Yes"]

# --- planted relation ---------------------------------------------------------------------
# (mean, sd) used to standardise each burden component, and its weight in the score.
BURDEN_TERMS: dict[str, tuple[float, float, float]] = {
    "days_past_due": (69.0, 59.5, 0.8),
    "num_missed_payments": (1.93, 2.06, 0.6),
    "log_emi_to_income": (-2.47, 1.31, 0.5),
    "outstanding_share": (0.55, 0.26, 0.5),
    "uncovered_share": (0.455, 0.487, 0.4),
}
BURDEN_VAR = 2.21
TARGET_SHARES = (0.59, 0.31, 0.10)  # Fully Recovered, Partially Recovered, Written Off
THETA_0 = (
    math.log(TARGET_SHARES[0] / (1 - TARGET_SHARES[0])),
    math.log((TARGET_SHARES[0] + TARGET_SHARES[1]) / TARGET_SHARES[2]),
)

# --- outcome-side columns: rows are Fully Recovered, Partially Recovered, Written Off, open --
_ATTEMPTS_P = np.array(
    [
        [0.25] * 4 + [0.0] * 7,
        [1 / 11] * 11,
        [(1 + k / 5) for k in range(11)],
        [1 / 6] * 6 + [0.0] * 5,
    ]
)
_ATTEMPTS_P = _ATTEMPTS_P / _ATTEMPTS_P.sum(axis=1, keepdims=True)
_METHOD_P = np.array(
    [
        [0.32, 0.20, 0.23, 0.25],
        [0.20, 0.25, 0.27, 0.28],
        [0.10, 0.40, 0.30, 0.20],
        [0.25, 0.25, 0.25, 0.25],
    ]
)
LEGAL_YES_P_LEGAL_NOTICE = 0.65
LEGAL_YES_P_OTHER = 0.40

_FEATURE_STREAM, _OUTCOME_STREAM, _OPEN_STREAM = 0, 1, 2


def _inverse_cdf(u: np.ndarray, p: Sequence[float]) -> np.ndarray:
    """Category index for uniforms ``u`` under probabilities ``p``."""
    cum = np.cumsum(np.asarray(p, dtype=np.float64))
    cum[-1] = 1.0
    return np.searchsorted(cum, u, side="right").astype(np.int64)


def _grouped_inverse_cdf(u: np.ndarray, group: np.ndarray, table: np.ndarray) -> np.ndarray:
    out = np.empty(len(u), dtype=np.int64)
    for g in range(table.shape[0]):
        mask = group == g
        out[mask] = _inverse_cdf(u[mask], table[g])
    return out


def _rng(seed: int, block: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block, stream)))


def burden_score(
    days_past_due: np.ndarray,
    num_missed_payments: np.ndarray,
    monthly_emi: np.ndarray,
    monthly_income: np.ndarray,
    outstanding: np.ndarray,
    loan_amount: np.ndarray,
    collateral: np.ndarray,
) -> np.ndarray:
    """The latent burden score of the planted relation (see the module docstring)."""
    outstanding = np.asarray(outstanding, dtype=np.float64)
    components = {
        "days_past_due": np.asarray(days_past_due, dtype=np.float64),
        "num_missed_payments": np.asarray(num_missed_payments, dtype=np.float64),
        "log_emi_to_income": np.log(np.asarray(monthly_emi, dtype=np.float64) / monthly_income),
        "outstanding_share": outstanding / loan_amount,
        "uncovered_share": 1.0 - np.minimum(np.asarray(collateral) / outstanding, 1.0),
    }
    score = np.zeros(len(outstanding), dtype=np.float64)
    for name, (mean, sd, weight) in BURDEN_TERMS.items():
        score += weight * (components[name] - mean) / sd
    return score


def recovery_probabilities(burden: np.ndarray, signal: float = DEFAULT_SIGNAL) -> np.ndarray:
    """(n, 3) probabilities of Fully Recovered / Partially Recovered / Written Off."""
    scale = math.sqrt(1.0 + math.pi * signal**2 * BURDEN_VAR / 8.0)
    eta = signal * np.asarray(burden, dtype=np.float64)
    p1 = 1.0 / (1.0 + np.exp(-(THETA_0[0] * scale - eta)))
    p12 = 1.0 / (1.0 + np.exp(-(THETA_0[1] * scale - eta)))
    return np.column_stack([p1, p12 - p1, 1.0 - p12])


def draw_status(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Status codes (0 Fully, 1 Partially Recovered, 2 Written Off) for uniforms ``u`` under
    the (n, 3) probabilities ``probs``: the inverse CDF, so a larger ``P(Fully Recovered)``
    turns exactly the rows with ``u`` below it into Fully Recovered."""
    return (u >= probs[:, 0]).astype(np.int64) + (u >= probs[:, 0] + probs[:, 1])


def draw_outcome_side(
    group: np.ndarray, u_attempts: np.ndarray, u_method: np.ndarray, u_legal: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of Collection_Attempts, Collection_Method and Legal_Action_Taken for rows of
    ``group`` 0-2 (the status codes of ``draw_status``) or 3 (open), from one uniform each."""
    attempts = _grouped_inverse_cdf(u_attempts, group, _ATTEMPTS_P)
    method = _grouped_inverse_cdf(u_method, group, _METHOD_P)
    p_legal = np.where(method == 1, LEGAL_YES_P_LEGAL_NOTICE, LEGAL_YES_P_OTHER)
    legal = ((group == 2) & (u_legal < p_legal)).astype(np.int64)
    return attempts, method, legal


def _ids(prefix: str, start: int, n: int) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, numbers, "")


def _labels(categories: Sequence[str], codes: np.ndarray, mask: np.ndarray | None = None):
    return pa.array(list(categories), type=pa.string()).take(pa.array(codes, mask=mask))


def _block(seed: int, block: int, start: int, n: int, signal: float, open_fraction: float):
    """Generate rows ``start .. start + n - 1`` (random block ``block``) as a pyarrow Table."""
    rng = _rng(seed, block, _FEATURE_STREAM)
    age = rng.integers(21, 65, n)
    gender = _inverse_cdf(rng.random(n), GENDER_P)
    employment = _inverse_cdf(rng.random(n), EMPLOYMENT_P)
    income = rng.integers(15_000, 250_001, n)
    dependents = rng.integers(0, 4, n)
    loan_amount = rng.integers(50_000, 2_000_001, n)
    tenure = TENURES[_inverse_cdf(rng.random(n), TENURE_P)]
    rate = np.round(rng.uniform(5.0, 18.0, n), 2)
    loan_type = _inverse_cdf(rng.random(n), LOAN_TYPE_P)
    collateral_factor = rng.uniform(0.5, 1.5, n)
    collateral = np.where(loan_type == 0, 0.0, np.round(loan_amount * collateral_factor, 2))
    outstanding = np.round(loan_amount * rng.uniform(0.1, 1.0, n), 2)
    emi = np.round(outstanding / tenure, 2)
    history = _inverse_cdf(rng.random(n), PAYMENT_HISTORY_P)
    missed_low = rng.integers(0, 4, n)
    missed_high = rng.integers(4, 13, n)
    missed_pick_high = rng.random(n) >= 0.4
    missed = np.where((history == 2) & missed_pick_high, missed_high, missed_low)
    dpd = rng.integers(1, 181, n)
    dpd_zero = rng.random(n) < 0.005
    dpd = np.where((missed == 0) | dpd_zero, 0, dpd)

    burden = burden_score(dpd, missed, emi, income, outstanding, loan_amount, collateral)
    probs = recovery_probabilities(burden, signal)

    rng_o = _rng(seed, block, _OUTCOME_STREAM)
    u_status = rng_o.random(n)
    u_attempts = rng_o.random(n)
    u_method = rng_o.random(n)
    u_legal = rng_o.random(n)
    status = draw_status(u_status, probs)

    is_open = _rng(seed, block, _OPEN_STREAM).random(n) < open_fraction
    group = np.where(is_open, 3, status)
    attempts, method, legal = draw_outcome_side(group, u_attempts, u_method, u_legal)

    columns = [
        _ids("BRW_", start, n),
        pa.array(age),
        _labels(GENDERS, gender),
        _labels(EMPLOYMENT_TYPES, employment),
        pa.array(income),
        pa.array(dependents),
        _ids("LN_", start, n),
        pa.array(loan_amount),
        pa.array(tenure),
        pa.array(rate),
        _labels(LOAN_TYPES, loan_type),
        pa.array(collateral),
        pa.array(outstanding),
        pa.array(emi),
        _labels(PAYMENT_HISTORIES, history),
        pa.array(missed),
        pa.array(dpd),
        _labels(RECOVERY_STATUSES, status, mask=is_open),
        pa.array(attempts),
        _labels(COLLECTION_METHODS, method),
        _labels(LEGAL_ACTIONS, legal),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _validate(rows: int, seed: int, signal: float, open_fraction: float, chunk_rows: int) -> None:
    if int(rows) != rows or rows < 0:
        raise ValueError(f"rows must be a non-negative integer, got {rows!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not math.isfinite(signal) or signal < 0:
        raise ValueError(f"signal must be a finite number >= 0, got {signal!r}")
    if not 0.0 <= open_fraction <= 1.0:
        raise ValueError(f"open_fraction must be in [0, 1], got {open_fraction!r}")
    if int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")


def iter_loan_book_chunks(
    rows: int,
    seed: int = 0,
    signal: float = DEFAULT_SIGNAL,
    open_fraction: float = 0.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pa.Table]:
    """Yield the book as pyarrow Tables of ``chunk_rows`` rows (the last one may be shorter).

    The content does not depend on ``chunk_rows``: concatenating the chunks gives the same
    book for every chunk size. Memory use is bounded by about ``chunk_rows + BLOCK_ROWS`` rows.
    """
    _validate(rows, seed, signal, open_fraction, chunk_rows)
    rows, seed, chunk_rows = int(rows), int(seed), int(chunk_rows)
    signal, open_fraction = float(signal), float(open_fraction)
    pending: list[pa.Table] = []
    pending_rows = 0
    for block, start in enumerate(range(0, rows, BLOCK_ROWS)):
        n = min(BLOCK_ROWS, rows - start)
        pending.append(_block(seed, block, start, n, signal, open_fraction))
        pending_rows += n
        if pending_rows >= chunk_rows:
            table = pa.concat_tables(pending)
            offset = 0
            while pending_rows - offset >= chunk_rows:
                yield table.slice(offset, chunk_rows)
                offset += chunk_rows
            pending = [table.slice(offset)] if offset < pending_rows else []
            pending_rows -= offset
    if pending_rows:
        yield pa.concat_tables(pending)


def generate_loan_book(
    rows: int, seed: int = 0, signal: float = DEFAULT_SIGNAL, open_fraction: float = 0.0
) -> pd.DataFrame:
    """The whole book as a DataFrame (for small and medium books).

    Dtypes match ``pd.read_csv`` of the written CSV: ints int64, floats float64, text object,
    and open loans have ``Recovery_Status`` NaN.
    """
    chunks = list(iter_loan_book_chunks(rows, seed, signal, open_fraction, BLOCK_ROWS))
    return table_to_frame(pa.concat_tables(chunks) if chunks else SCHEMA.empty_table())


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """A ``SCHEMA`` table as the DataFrame ``generate_loan_book`` returns (its dtypes)."""
    frame = table.to_pandas()
    for column in COLUMNS:
        if SCHEMA.field(column).type == pa.string():
            frame[column] = frame[column].astype(object)
    status = frame["Recovery_Status"]
    frame["Recovery_Status"] = status.where(status.notna(), np.nan)
    return frame


def write_loan_book(
    path: str | os.PathLike[str],
    rows: int,
    seed: int = 0,
    signal: float = DEFAULT_SIGNAL,
    open_fraction: float = 0.0,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Path:
    """Stream the book to a CSV file and return its path.

    Parent folders are created; the CSV is written to a temporary file in the target folder
    and renamed over ``path`` only when complete, so readers never see a partial file.
    """
    _validate(rows, seed, signal, open_fraction, chunk_rows)
    return write_tables(path, iter_loan_book_chunks(rows, seed, signal, open_fraction, chunk_rows))


def write_tables(path: str | os.PathLike[str], tables: Iterator[pa.Table]) -> Path:
    """Write ``SCHEMA`` tables to one CSV, as ``write_loan_book`` does, and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    options = pacsv.WriteOptions(
        batch_size=8192, quoting_style="none", quoting_header="none", null_string=""
    )
    try:
        with pa.OSFile(str(tmp), "wb") as sink:
            with pacsv.CSVWriter(sink, SCHEMA, write_options=options) as writer:
                for table in tables:
                    writer.write_table(table)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


DEFAULT_ROWS = 500  # the CLI's book size when --rows is not given
PROG = "python -m loan_pipeline.sample"


def add_book_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a first snapshot (``main``; ``loan_pipeline.sample`` adds the follow-up's).

    --rows and --open-fraction default to None, so that the follow-up can refuse them."""
    parser.add_argument("--rows", type=int, help=f"number of loans (default {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument(
        "--signal",
        type=float,
        default=DEFAULT_SIGNAL,
        help="strength of the planted burden -> outcome relation; 0 = none (default %(default)s)",
    )
    parser.add_argument(
        "--open-fraction",
        type=float,
        help="share of open loans with a blank Recovery_Status (default 0.0)",
    )


def write_first(args: argparse.Namespace) -> Path:
    """Write the book the parsed options of ``add_book_arguments`` ask for."""
    rows = DEFAULT_ROWS if args.rows is None else args.rows
    shares = {} if args.open_fraction is None else {"open_fraction": args.open_fraction}
    path = write_loan_book(args.out, rows, args.seed, args.signal, **shares)
    print(f"wrote {rows} rows to {path}")
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """A first snapshot from the command line (``python -m loan_pipeline.sample`` also writes
    follow-ups: the follow-up module builds on this one, so its CLI cannot live here)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a seeded synthetic loan book (CSV) with a planted recovery signal.",
    )
    add_book_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return write_first(args)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
