"""Tests of the seeded synthetic loan-book generator (loan_pipeline.core.generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loan_pipeline.core import generator
from loan_pipeline.core.generator import (
    BLOCK_ROWS,
    COLUMNS,
    generate_loan_book,
    iter_loan_book_chunks,
    write_loan_book,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_CSV = PROJECT_ROOT.parent / "shared" / "data" / "loan-recovery.csv"
SAMPLE_CSV = PROJECT_ROOT / "data" / "loan_book_sample.csv"

CATEGORIES = {
    "Gender": {"Male", "Female"},
    "Employment_Type": {"Salaried", "Self-Employed", "Business Owner"},
    "Loan_Type": {"Personal", "Home", "Auto", "Business"},
    "Payment_History": {"On-Time", "Delayed", "Missed"},
    "Recovery_Status": {"Fully Recovered", "Partially Recovered", "Written Off"},
    "Collection_Method": {"Calls", "Legal Notice", "Debt Collectors", "Settlement Offer"},
    "Legal_Action_Taken": {"No", "Yes"},
}
INT_RANGES = {
    "Age": (21, 64),
    "Monthly_Income": (15_000, 250_000),
    "Num_Dependents": (0, 3),
    "Loan_Amount": (50_000, 2_000_000),
    "Num_Missed_Payments": (0, 12),
    "Days_Past_Due": (0, 180),
    "Collection_Attempts": (0, 10),
}


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, float_precision="round_trip")


def not_fully_recovered(df: pd.DataFrame) -> np.ndarray:
    return (df["Recovery_Status"] != "Fully Recovered").to_numpy()


def cv_auc(X: np.ndarray, y: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression())
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    return float(cross_val_score(model, X, y, cv=folds, scoring="roc_auc").mean())


def arrears_features(df: pd.DataFrame) -> np.ndarray:
    return np.column_stack(
        [
            df["Days_Past_Due"],
            df["Num_Missed_Payments"],
            df["Monthly_EMI"] / df["Monthly_Income"],
            df["Outstanding_Loan_Amount"] / df["Loan_Amount"],
        ]
    )


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    return generate_loan_book(20_000, seed=7)


def test_columns_match_reference_header():
    if not REFERENCE_CSV.exists():
        pytest.skip(f"reference data set not found at {REFERENCE_CSV}")
    header = pd.read_csv(REFERENCE_CSV, nrows=0).columns.tolist()
    assert COLUMNS == header
    assert len(COLUMNS) == 21


def test_category_sets_match_reference():
    if not REFERENCE_CSV.exists():
        pytest.skip(f"reference data set not found at {REFERENCE_CSV}")
    ref = pd.read_csv(REFERENCE_CSV)
    for column, values in CATEGORIES.items():
        assert set(ref[column].unique()) == values, column
    assert set(ref["Loan_Tenure"].unique()) == {12, 24, 36, 48, 60, 72}


def test_book_columns_and_dtypes(book):
    assert book.columns.tolist() == COLUMNS
    assert len(book) == 20_000
    for column in [*INT_RANGES, "Loan_Tenure"]:
        assert pd.api.types.is_integer_dtype(book[column]), column
    for column in ["Interest_Rate", "Collateral_Value", "Outstanding_Loan_Amount", "Monthly_EMI"]:
        assert pd.api.types.is_float_dtype(book[column]), column
    assert not book.isna().any().any()


def test_ids_are_global_and_unique(book):
    n = len(book)
    expected = [f"{i}" for i in range(1, n + 1)]
    assert book["Borrower_ID"].tolist() == ["BRW_" + s for s in expected]
    assert book["Loan_ID"].tolist() == ["LN_" + s for s in expected]
    assert book["Borrower_ID"].is_unique and book["Loan_ID"].is_unique


def test_ranges_and_categories(book):
    for column, (low, high) in INT_RANGES.items():
        assert book[column].between(low, high).all(), column
        # The ranges are actually used, not just respected.
        assert book[column].min() <= low + (high - low) * 0.05, column
        assert book[column].max() >= high - (high - low) * 0.05, column
    for column, values in CATEGORIES.items():
        assert set(book[column].unique()) == values, column
    assert set(book["Loan_Tenure"].unique()) == {12, 24, 36, 48, 60, 72}
    rate = book["Interest_Rate"]
    assert rate.between(5.0, 18.0).all()
    assert np.allclose(rate, rate.round(2), rtol=0, atol=1e-9)


def test_money_columns(book):
    amount = book["Loan_Amount"]
    share = book["Outstanding_Loan_Amount"] / amount
    assert share.between(0.1 - 1e-9, 1.0 + 1e-9).all()
    personal = book["Loan_Type"] == "Personal"
    assert personal.any() and (~personal).any()
    assert (book.loc[personal, "Collateral_Value"] == 0).all()
    cover = book.loc[~personal, "Collateral_Value"] / amount[~personal]
    assert cover.between(0.5 - 1e-9, 1.5 + 1e-9).all()
    for column in ["Collateral_Value", "Outstanding_Loan_Amount", "Monthly_EMI"]:
        assert np.allclose(book[column], book[column].round(2), rtol=0, atol=1e-6), column


def test_emi_identity(book):
    expected = (book["Outstanding_Loan_Amount"] / book["Loan_Tenure"]).round(2)
    assert np.allclose(book["Monthly_EMI"], expected, rtol=0, atol=0.005 + 1e-9)


def test_emi_identity_holds_in_reference():
    if not REFERENCE_CSV.exists():
        pytest.skip(f"reference data set not found at {REFERENCE_CSV}")
    ref = pd.read_csv(REFERENCE_CSV)
    expected = (ref["Outstanding_Loan_Amount"] / ref["Loan_Tenure"]).round(2)
    assert np.allclose(ref["Monthly_EMI"], expected, rtol=0, atol=0.005 + 1e-9)


def test_arrears_and_outcome_side_rules(book):
    missed = book["Num_Missed_Payments"]
    dpd = book["Days_Past_Due"]
    assert (dpd[missed == 0] == 0).all()
    assert (dpd[missed > 0] > 0).mean() > 0.98
    legal_yes = book["Legal_Action_Taken"] == "Yes"
    assert legal_yes.any()
    assert (book.loc[legal_yes, "Recovery_Status"] == "Written Off").all()
    # Outcome-side columns depend on the outcome (leakage by design).
    attempts = book.groupby("Recovery_Status")["Collection_Attempts"].mean()
    assert attempts["Fully Recovered"] < attempts["Partially Recovered"] < attempts["Written Off"]
    assert book.loc[book["Recovery_Status"] == "Fully Recovered", "Collection_Attempts"].max() <= 3


def test_marginal_shares_roughly_like_reference(book):
    shares = book["Recovery_Status"].value_counts(normalize=True)
    assert shares["Fully Recovered"] == pytest.approx(0.59, abs=0.03)
    assert shares["Partially Recovered"] == pytest.approx(0.31, abs=0.03)
    assert shares["Written Off"] == pytest.approx(0.10, abs=0.03)
    assert (book["Legal_Action_Taken"] == "Yes").mean() == pytest.approx(0.05, abs=0.02)
    assert (book["Loan_Type"] == "Personal").mean() == pytest.approx(0.44, abs=0.03)
    assert (book["Payment_History"] == "On-Time").mean() == pytest.approx(0.61, abs=0.03)
    assert (book["Days_Past_Due"] == 0).mean() == pytest.approx(0.24, abs=0.03)
    # Marginals stay put without signal (the thresholds are rescaled with the signal).
    flat = generate_loan_book(20_000, seed=7, signal=0.0)
    flat_shares = flat["Recovery_Status"].value_counts(normalize=True)
    assert flat_shares["Fully Recovered"] == pytest.approx(0.59, abs=0.03)
    assert flat_shares["Written Off"] == pytest.approx(0.10, abs=0.03)


def test_same_seed_same_book_different_seed_different():
    a = generate_loan_book(3_000, seed=11)
    b = generate_loan_book(3_000, seed=11)
    c = generate_loan_book(3_000, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a.drop(columns=["Borrower_ID", "Loan_ID"]).equals(
        c.drop(columns=["Borrower_ID", "Loan_ID"])
    )
    assert (a["Loan_Amount"] != c["Loan_Amount"]).mean() > 0.99


def test_features_do_not_depend_on_signal_or_open_fraction():
    base = generate_loan_book(5_000, seed=3)
    other = generate_loan_book(5_000, seed=3, signal=0.0, open_fraction=0.3)
    features = COLUMNS[: COLUMNS.index("Recovery_Status")]
    pd.testing.assert_frame_equal(base[features], other[features])


def test_csv_round_trip_equals_generate(tmp_path):
    path = write_loan_book(tmp_path / "nested" / "book.csv", 3_000, seed=5, open_fraction=0.1)
    assert path == tmp_path / "nested" / "book.csv"
    assert [p.name for p in path.parent.iterdir()] == ["book.csv"]  # no temp file left
    with path.open() as fh:
        assert fh.readline().rstrip("\n") == ",".join(COLUMNS)
    written = read_csv(path)
    expected = generate_loan_book(3_000, seed=5, open_fraction=0.1)
    pd.testing.assert_frame_equal(written, expected, check_exact=True)


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "book.csv"
    path.write_text("old content\n")
    write_loan_book(path, 10, seed=1)
    assert len(read_csv(path)) == 10


def test_zero_rows(tmp_path):
    assert generate_loan_book(0).columns.tolist() == COLUMNS
    path = write_loan_book(tmp_path / "empty.csv", 0)
    assert path.read_text().strip() == ",".join(COLUMNS)


def test_chunked_equals_unchunked(tmp_path):
    rows = BLOCK_ROWS + 1_234  # spans two random blocks and several output chunks
    chunks = list(iter_loan_book_chunks(rows, seed=9, chunk_rows=30_000))
    assert [c.num_rows for c in chunks] == [30_000] * 3 + [rows - 90_000]
    assert all(isinstance(c, pa.Table) and c.column_names == COLUMNS for c in chunks)
    whole = generate_loan_book(rows, seed=9)
    chunked = pa.concat_tables(chunks).to_pandas()
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    assert whole["Borrower_ID"].iloc[-1] == f"BRW_{rows}"
    assert whole["Loan_ID"].is_unique
    # The CSV writer gives the same book whatever its chunk size.
    small = write_loan_book(tmp_path / "small.csv", 2_500, seed=4, chunk_rows=700)
    large = write_loan_book(tmp_path / "large.csv", 2_500, seed=4)
    assert small.read_bytes() == large.read_bytes()


def test_open_fraction():
    df = generate_loan_book(20_000, seed=2, open_fraction=0.2)
    is_open = df["Recovery_Status"].isna()
    assert is_open.mean() == pytest.approx(0.2, abs=0.015)
    assert (df.loc[is_open, "Legal_Action_Taken"] == "No").all()
    assert df.loc[is_open, "Collection_Attempts"].between(0, 5).all()
    closed = df.loc[~is_open, "Recovery_Status"]
    assert set(closed.unique()) == CATEGORIES["Recovery_Status"]
    assert generate_loan_book(1_000, seed=2, open_fraction=0.0)["Recovery_Status"].notna().all()
    assert generate_loan_book(1_000, seed=2, open_fraction=1.0)["Recovery_Status"].isna().all()


def test_planted_signal_is_real():
    df = generate_loan_book(10_000, seed=21, signal=1.0)
    auc = cv_auc(arrears_features(df), not_fully_recovered(df))
    assert auc > 0.7
    assert auc < 0.92  # noisy, not deterministic


def test_no_signal_when_signal_is_zero():
    df = generate_loan_book(10_000, seed=21, signal=0.0)
    assert cv_auc(arrears_features(df), not_fully_recovered(df)) < 0.58


def test_age_and_gender_carry_no_signal(book):
    y = not_fully_recovered(book)
    assert 0.45 <= roc_auc_score(y, book["Age"]) <= 0.55
    assert 0.45 <= roc_auc_score(y, (book["Gender"] == "Male").astype(int)) <= 0.55


def test_invalid_arguments():
    with pytest.raises(ValueError):
        generate_loan_book(-1)
    with pytest.raises(ValueError):
        generate_loan_book(10, open_fraction=1.5)
    with pytest.raises(ValueError):
        generate_loan_book(10, signal=-1.0)
    with pytest.raises(ValueError):
        list(iter_loan_book_chunks(10, chunk_rows=0))


def test_cli_writes_book(tmp_path):
    out = tmp_path / "cli" / "book.csv"
    generator.main(["--rows", "300", "--seed", "8", "--out", str(out), "--open-fraction", "0.5"])
    expected = generate_loan_book(300, seed=8, open_fraction=0.5)
    pd.testing.assert_frame_equal(read_csv(out), expected, check_exact=True)


def test_committed_sample_is_reproducible():
    if not SAMPLE_CSV.exists():
        pytest.skip(f"shipped sample not found at {SAMPLE_CSV}")
    committed = read_csv(SAMPLE_CSV)
    pd.testing.assert_frame_equal(committed, generate_loan_book(500, 42), check_exact=True)
