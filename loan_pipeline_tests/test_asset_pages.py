"""What the asset pages show, on the shipped sample and the reference data set: numbers rounded
to what they mean, the risk model's figures trimmed to a table, tables that fit, the model card's
image inside its markdown, and the checks on recovery_strategies (passing on real runs, failing
on a broken table)."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

from loan_pipeline.assets.risk import (
    COVERAGE_CHECK,
    GATE_CHECK,
    HEADLINE,
    POLICY_CHECK,
    REASON_CHECK,
    SIGN_CHECK,
    _strategy_checks,
)
from loan_pipeline.core.rounding import as_text, kind_of, markdown, rounded, transposed_markdown
from loan_pipeline.domain import POLICY_CAPACITY, POLICY_FALLBACK, POLICY_MODEL, STRATEGY_SHORT
from loan_pipeline.settings import StrategyConfig

# a long strategy name, as the export spells it, must not head a column on an asset page
LONG_STRATEGY = "Immediate legal notices & aggressive recovery attempts"
DATA_PNG = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture(params=["sample_run", "reference_run"])
def run(request):
    return request.getfixturevalue(request.param)


def _decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def _width(table: str) -> int:
    """How wide a markdown table renders, in characters: the widest cell of each column, added
    up (the padding tabulate writes is not rendered)."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for i, line in enumerate(table.strip().splitlines())
        if i != 1
    ]
    return sum(max(len(row[j]) for row in rows) for j in range(len(rows[0])))


def _checks(run) -> dict:
    return {c.check_name: c for c in run.result.get_asset_check_evaluations()}


# --- rounding -----------------------------------------------------------------------------------


def test_numbers_are_rounded_by_what_they_mean():
    assert rounded("borrowers", 50.0) == 50 and isinstance(rounded("borrowers", 50.0), int)
    assert rounded("expected_shortfall", 552083.1234) == 552083.12
    assert rounded("model_roc_auc", 0.8044680710121886) == 0.804
    assert rounded("Loan_Amount", {"x": 1}) == {"x": 1}
    assert rounded("scaler", {"Loan_Amount": 1047731.524, "Interest_Rate": 11.4054}) == {
        "Loan_Amount": 1047731.52,
        "Interest_Rate": 11.405,
    }
    assert rounded("flag", True) is True
    assert [kind_of(n) for n in ("Monthly_EMI", "resolved_loans", "n_test", "gini")] == [
        "money",
        "count",
        "count",
        "rate",
    ]
    assert as_text("borrowers", 1234.0) == "1,234" and as_text("gini", 0.5) == "0.500"
    assert as_text("gini", float("nan")) == ""
    table = pd.DataFrame(
        {"decile": [1.0, 2.0], "predicted": [0.04531, 0.1], "borrowers": [50.0, 50.0]}
    )
    assert markdown(table).splitlines()[2] == "|        1 |       0.045 |          50 |"
    side = transposed_markdown(table.assign(g=["a", "b"]), "g")
    assert [c.strip() for c in side.splitlines()[0].split("|")[1:4]] == ["g", "a", "b"]
    assert [c.strip() for c in side.splitlines()[4].split("|")[1:4]] == ["borrowers", "50", "50"]


# --- the pages, on real runs -----------------------------------------------------------------


def test_metadata_numbers_are_rounded_and_counts_are_whole(run):
    for asset, metadata in run.materialized().items():
        for key, entry in metadata.items():
            value = entry.value
            if isinstance(value, float) and value == value:
                # money 2 decimals, everything else 3
                assert _decimals(value) <= 3, (asset, key, value)
                assert kind_of(key) != "count" or not value.is_integer(), (asset, key, value)
            if isinstance(value, str) and value.startswith("|"):  # a markdown table
                assert not re.search(r"\d\.\d{4,}\b", value), (asset, key)
    # counts in a table are whole numbers ("50", not "50.000")
    calibration = run.materialized()["risk_model"]["calibration"].value.splitlines()
    header = [h.strip() for h in calibration[0].split("|")]
    for line in calibration[2:]:
        cells = [c.strip() for c in line.split("|")]
        for name in ("decile", "borrowers"):
            assert cells[header.index(name)].isdigit(), line


def test_the_risk_model_page_shows_headline_figures_and_one_table(run):
    risk = run.materialized()["risk_model"]
    figures = [k for k, v in risk.items() if isinstance(v.value, float)]
    assert set(figures) <= set(HEADLINE), figures
    assert len(risk) <= 28, list(risk)
    assert max(len(k) for k in risk) <= 30, max(risk, key=len)
    table = risk["metrics"].value
    # every figure of both targets is in the table, once, and the prefixed keys are gone
    assert "written_off_" not in " ".join(risk)
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert "base_rate_pr_auc" in rows and "hosmer_lemeshow_p" in rows
    assert len(rows) == len(set(rows))
    assert "| resolved_loans" in table and "0.500 |" in table  # the base rate's ROC AUC
    assert risk["resolved_loans"].value == int(risk["resolved_loans"].value)


def test_strategy_tables_fit_the_page(run):
    strategies = run.materialized()["recovery_strategies"]
    for key in ("strategy_by_segment", "loss_by_strategy"):
        table = strategies[key].value
        assert LONG_STRATEGY not in table, key
        assert _width(table) <= 90, (key, table)
    header = strategies["strategy_by_segment"].value.splitlines()[0]
    assert [h.strip() for h in header.split("|")[2:-1]] == list(STRATEGY_SHORT.values())
    fairness = run.materialized()["fairness_report"]["report"].value
    assert _width(fairness) <= 90, fairness


def test_the_model_card_image_is_inside_its_markdown_and_the_file_links_the_chart(run):
    shown = run.materialized()["model_card"]["model_card"].value
    (encoded,) = DATA_PNG.findall(shown)
    stored = (run.storage / "charts" / "chart_calibration.png").read_bytes()
    assert base64.b64decode(encoded) == stored
    assert "../charts/chart_calibration.png" not in shown
    on_disk = (run.storage / "reports" / "model_card.md").read_text()
    assert "![Calibration](../charts/chart_calibration.png)" in on_disk
    assert "data:image" not in on_disk
    # the relative link resolves from where the card lies
    assert (run.storage / "reports" / "../charts/chart_calibration.png").resolve().exists()
    fairness = on_disk.split("## Fairness", 1)[1].split("## Limits", 1)[0]
    assert _width(fairness) <= 90, fairness


def test_recovery_strategies_checks_pass_on_real_books(run):
    checks = _checks(run)
    borrowers = len(run.table("validated_loans"))
    coverage = checks[COVERAGE_CHECK]
    assert coverage.passed and coverage.metadata["borrowers"].value == borrowers
    # the sample's model passes its gates; the reference book's does not beat the base rate
    gates = checks[GATE_CHECK].passed and checks[SIGN_CHECK].passed
    expected = POLICY_MODEL if gates else POLICY_FALLBACK
    policy = checks[POLICY_CHECK]
    assert policy.passed and policy.metadata["expected_policy"].value == expected
    assert policy.metadata["rows_per_policy"].value == {expected: borrowers}
    assert set(run.table("recovery_strategies")["policy"]) == {expected}
    reason = checks[REASON_CHECK]
    assert reason.passed and reason.metadata["rows_without_a_reason"].value == 0


def test_cluster_model_says_what_happened_to_k(run):
    cluster = run.materialized()["cluster_model"]
    chosen_by = cluster["k_chosen_by"].value
    table = cluster["k_selection"].value
    stable = [line.split("|")[7].strip() for line in table.splitlines()[2:]]
    if "True" not in stable:
        assert chosen_by.startswith("data: no k is reproducible"), chosen_by
    assert "chosen among" not in chosen_by


# --- the checks on a broken table --------------------------------------------------------------


class _Model:
    def __init__(self, beats=True, signs=True, method="recommended"):
        self.beats_baseline, self.signs_agree, self.method = beats, signs, method


def _evaluate(table, loans, model, assignment="bands") -> dict:
    # the default experiment (none): the checks as a run with the default config makes them
    checks = _strategy_checks(
        table, loans, model, assignment=assignment, experiment=StrategyConfig().experiment
    )
    return {r.check_name: r for r in checks}


@pytest.fixture
def book(sample_run):
    return sample_run.table("recovery_strategies"), sample_run.table("validated_loans")


def test_a_borrower_left_off_fails_the_coverage_check(book):
    table, loans = book
    assert _evaluate(table, loans, _Model())[COVERAGE_CHECK].passed
    result = _evaluate(table.iloc[1:], loans, _Model())[COVERAGE_CHECK]
    assert not result.passed and result.severity.value == "ERROR"
    blank = table.assign(recovery_strategy=table["recovery_strategy"].mask(table.index == 3))
    assert not _evaluate(blank, loans, _Model())[COVERAGE_CHECK].passed


def test_a_policy_other_than_the_rule_fails_the_policy_check(book):
    table, loans = book
    # the gate failed, yet the table says score bands: the fallback was expected
    failed = _evaluate(table, loans, _Model(beats=False))[POLICY_CHECK]
    assert not failed.passed and failed.metadata["expected_policy"].value == POLICY_FALLBACK
    signs = _evaluate(table, loans, _Model(signs=False))[POLICY_CHECK]
    assert not signs.passed and "sign" in signs.metadata["why"].value
    capacity = _evaluate(table, loans, _Model(), assignment="capacity")[POLICY_CHECK]
    assert not capacity.passed and capacity.metadata["expected_policy"].value == POLICY_CAPACITY
    mixed = table.assign(policy=table["policy"].mask(table.index == 0, POLICY_FALLBACK))
    assert not _evaluate(mixed, loans, _Model())[POLICY_CHECK].passed


def test_a_strategy_without_a_reason_warns(book):
    table, loans = book
    bare = table.assign(reason_1=table["reason_1"].mask(table.index < 4))
    result = _evaluate(bare, loans, _Model())[REASON_CHECK]
    assert not result.passed and result.severity.value == "WARN"
    assert result.metadata["rows_without_a_reason"].value == 4
