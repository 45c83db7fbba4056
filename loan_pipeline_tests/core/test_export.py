from __future__ import annotations

import io

import pandas as pd

from loan_pipeline.core.export import neutralise_formulas, to_csv_bytes
from loan_pipeline.store.files import StorageError, atomic_write_bytes


def test_formula_cells_in_text_columns_are_neutralised():
    df = pd.DataFrame(
        {
            "Borrower_ID": [
                '=HYPERLINK("http://x")',
                "+1",
                "-2+3",
                "@SUM(A1)",
                "BRW_5",
                "\tx",
                None,
            ],
            "risk_score": [-0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        }
    )
    out = neutralise_formulas(df)
    assert out["Borrower_ID"].tolist()[:6] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2+3",
        "'@SUM(A1)",
        "BRW_5",
        "'\tx",
    ]
    assert out["Borrower_ID"].isna().tolist()[6]
    assert out["risk_score"].tolist() == df["risk_score"].tolist()  # numbers untouched
    assert df["Borrower_ID"][0].startswith("=")  # the input frame is not modified
    back = pd.read_csv(io.BytesIO(to_csv_bytes(df)))
    assert not back["Borrower_ID"].dropna().str.match(r"^[=+\-@]").any()
    # the pipeline's own text dtype (Arrow-backed strings) is neutralised the same way
    arrow_text = df.astype({"Borrower_ID": "string[pyarrow]"})
    assert neutralise_formulas(arrow_text)["Borrower_ID"].tolist()[:2] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
    ]
    back = pd.read_csv(io.BytesIO(to_csv_bytes(arrow_text)))
    assert not back["Borrower_ID"].dropna().str.match(r"^[=+\-@]").any()


def test_atomic_write_replaces_whole_file_and_clears_stale_temporaries(tmp_path):
    target = tmp_path / "chart.png"
    stale = tmp_path / ".chart.png.abc123.tmp"
    stale.write_bytes(b"half a chart")
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    assert not stale.exists()
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png"]
    assert oct(target.stat().st_mode & 0o777) != "0o600"


def test_a_write_that_dies_before_the_rename_leaves_the_old_file(tmp_path, monkeypatch):
    import pytest

    target = tmp_path / "recovery_strategies.csv"
    atomic_write_bytes(target, b"good,old\n")

    def crash(*_args, **_kwargs):
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr("loan_pipeline.store.files.os.replace", crash)
    with pytest.raises(StorageError, match="simulated crash"):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"good,old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recovery_strategies.csv"]


def test_a_table_write_that_fails_midway_leaves_the_previous_table(tmp_path):
    """A table write that fails midway (here: a column Parquet cannot store) leaves the previous
    table whole, and no half-written folder beside it."""
    import pytest

    from loan_pipeline.store.tables import read_table, write_table

    folder = tmp_path / "tables" / "risk_scores"
    good = pd.DataFrame({"Borrower_ID": ["a", "b"], "risk_score": [0.1, 0.9]})
    write_table(good, folder)
    bad = pd.DataFrame({"Borrower_ID": ["c"], "risk_score": [object()]})
    with pytest.raises(Exception):  # noqa: B017 - any failure will do; the point is what remains
        write_table(bad, folder)
    back = read_table(folder)
    pd.testing.assert_frame_equal(back.astype({"Borrower_ID": object}), good)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["risk_scores"]
