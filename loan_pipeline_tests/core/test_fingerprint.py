"""Digests: equal for equal values wherever they come from, different for any change."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pandas as pd
import pytest

from loan_pipeline.core import fingerprint
from loan_pipeline.store.results import ResultStore


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "Borrower_ID": [f"BRW_{i}" for i in range(200)],
            "Loan_Amount": rng.normal(50_000, 10_000, 200),
            "Num_Missed_Payments": rng.integers(0, 6, 200),
        }
    )


def test_equal_frames_have_equal_digests_whatever_their_memory():
    frame = _frame()
    copy = pd.DataFrame({c: frame[c].to_numpy().copy() for c in frame.columns})
    assert fingerprint.frame_digest(frame) == fingerprint.frame_digest(copy)
    assert fingerprint.value_digest(frame) == fingerprint.frame_digest(frame)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(Loan_Amount=f["Loan_Amount"].where(f.index != 117, 1.0)),
        lambda f: f.assign(Num_Missed_Payments=f["Num_Missed_Payments"].astype("float64")),
        lambda f: f.rename(columns={"Loan_Amount": "Loan_Value"}),
        lambda f: f.iloc[::-1],
        lambda f: f.iloc[::-1].reset_index(drop=True),
        lambda f: f.set_axis(f.index + 1),
        lambda f: f.iloc[:-1],
        lambda f: f[["Loan_Amount", "Borrower_ID", "Num_Missed_Payments"]],
    ],
    ids=[
        "one value",
        "dtype",
        "column name",
        "row order",
        "row order, same index",
        "index",
        "one row fewer",
        "column order",
    ],
)
def test_any_change_gives_another_digest(change):
    frame = _frame()
    assert fingerprint.frame_digest(change(frame)) != fingerprint.frame_digest(frame)


def test_a_frame_held_elsewhere_has_no_digest():
    dd = pytest.importorskip("dask.dataframe")
    assert fingerprint.value_digest(dd.from_pandas(_frame(), npartitions=2)) is None


def test_objects_are_digested_by_value():
    model = {"centres": np.arange(6.0).reshape(3, 2), "k": 3}
    same = {"centres": np.arange(6.0).reshape(3, 2), "k": 3}
    other = {"centres": np.arange(6.0).reshape(3, 2), "k": 4}
    assert fingerprint.value_digest(model) == fingerprint.value_digest(same)
    assert fingerprint.value_digest(model) != fingerprint.value_digest(other)


def test_parts_are_kept_apart():
    assert fingerprint.digest_of_parts("ab", "c") != fingerprint.digest_of_parts("a", "bc")


def test_the_code_version_names_the_libraries():
    assert fingerprint.code_version("pandas") != fingerprint.code_version("pandas", "numpy")
    assert fingerprint.code_version("pandas") == fingerprint.code_version("pandas")


PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" + b"IEND\xaeB`\x82"


def test_the_store_gives_back_what_it_kept_and_nothing_broken(tmp_path):
    store = ResultStore(tmp_path / "results", keep_days=7)
    assert store.get("abc") is None
    store.put("abc", PNG)
    assert store.get("abc") == PNG
    (tmp_path / "results" / "cut.png").write_bytes(PNG[:-3])
    (tmp_path / "results" / "text.png").write_bytes(b"not a picture")
    assert store.get("cut") is None and store.get("text") is None
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["abc.png"]


def test_the_store_forgets_what_was_not_used_for_keep_days(tmp_path):
    store = ResultStore(tmp_path, keep_days=7)
    for name in ("old", "used", "new"):
        store.put(name, PNG)
    eight_days_ago = time.time() - 8 * 86400
    for name in ("old", "used"):
        os.utime(tmp_path / f"{name}.png", (eight_days_ago, eight_days_ago))
    assert store.get("used") == PNG  # using a result keeps it

    assert store.prune() == 1
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == ["new", "used"]


def test_a_pickle_is_the_same_whether_equal_strings_are_one_object_or_two():
    """pickle writes a shared string once and an equal copy twice; which a fitted model holds
    depends on what its process ran before, so the model file's bytes (and the SHA-256 the
    drift baseline records) would too."""
    shared = "remainder"
    copy = "".join(["remain", "der"])  # equal, another object
    assert copy == shared and copy is not shared
    one = {"name": shared, "columns": [(shared, 1)]}
    two = {"name": shared, "columns": [(copy, 1)]}
    assert pickle.dumps(one, protocol=5) != pickle.dumps(two, protocol=5)  # what pickle does
    assert fingerprint.pickled(one) == fingerprint.pickled(two)
    assert pickle.loads(fingerprint.pickled(two)) == two
    assert fingerprint.value_digest(one) == fingerprint.value_digest(two)
