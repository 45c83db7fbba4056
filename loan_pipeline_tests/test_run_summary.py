"""The run summary: the last log entry of a run in the UI (``published_snapshot`` logs it) is the
summary of the run's own events, the text ``python -m loan_pipeline run`` prints."""

from __future__ import annotations

from dagster import DagsterInstance, materialize

from loan_pipeline.core.run_summary import (
    CheckResult,
    Materialized,
    policy_line,
    published_line,
    summary,
)
from loan_pipeline_tests.conftest import SAMPLE_CSV, environment
from loan_pipeline_tests.test_definitions import EXPECTED


def test_the_runs_last_log_entry_is_its_summary(tmp_path):
    """Materialized in this process (the ephemeral asset job of ``materialize``, not a named
    job): the last log message of the run is the summary read back from the instance once the
    run has ended, published_snapshot's own materialization included; its metadata holds it."""
    from loan_pipeline.assets.publication import summary_of_run
    from loan_pipeline.definitions import all_assets, defs
    from loan_pipeline.io import runs

    instance = DagsterInstance.ephemeral()
    config = {"ops": {"ingest_loan_book": {"config": {"csv_path": str(SAMPLE_CSV)}}}}
    with environment(LOAN_PIPELINE_STORAGE=str(tmp_path)):
        result = materialize(
            all_assets, instance=instance, resources=defs.resources, run_config=config
        )
        assert result.success
        graph = result.job_def.asset_layer.asset_graph
        after = runs.store().manifest()
        expected = summary_of_run(
            instance,
            result.run_id,
            graph.toposorted_asset_keys,
            published_line(None, after, result.run_id),
        )
    logs = [e for e in instance.all_logs(result.run_id) if not e.is_dagster_event]
    assert logs[-1].step_key == "published_snapshot"
    assert logs[-1].user_message == expected
    lines = expected.splitlines()
    n = len(EXPECTED)
    assert lines[0] == f"Loan pipeline run {result.run_id} succeeded: {n} assets from {SAMPLE_CSV}"
    assert lines[1] == "Assets, in graph order (each after what it reads), with table rows:"
    order = [key.to_user_string() for key in graph.toposorted_asset_keys]
    assert [line.split()[0] for line in lines[2 : 2 + n]] == order
    assert order[-1] == "published_snapshot" and lines[1 + n] == "  published_snapshot"
    assert any(line.startswith("  WARN  cluster_model / chosen_k_is_stable: ") for line in lines)
    assert lines[-1].startswith(f"Published: snapshot {result.run_id} (storage/current; ")
    (published,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "published_snapshot"
    ]
    assert published.metadata["run_summary"].value == f"```\n{expected}\n```"


def test_capacity_policy_says_what_was_asked_and_where_the_list_was_cut():
    gate = [
        CheckResult(
            "risk_model",
            "model_beats_base_rate",
            True,
            "ERROR",
            None,
            {
                "brier_skill_vs_base_rate": 0.25,
                "min_skill": 0.01,
            },
        ),
        CheckResult("risk_model", "coefficient_signs_agree_with_data", True, "ERROR"),
    ]
    strategies = {
        "policy": "capacity ranking",
        "ranking_key": "expected_shortfall",
        "legal_capacity": 40,
        "settlement_capacity": 120,
    }
    assert policy_line(strategies, gate) == (
        "Policy:    capacity ranking, because assignment 'capacity' was asked for (worklist by "
        "expected_shortfall, cut at 40 legal and 120 settlement) and the risk model passed "
        "model_beats_base_rate (Brier skill 0.2500 >= min_skill 0.0100) and "
        "coefficient_signs_agree_with_data"
    )
    # a run that made no strategies says nothing of a policy
    assert policy_line({}, gate) is None


def test_a_run_of_two_assets_says_only_what_it_made():
    """pin-baseline's run (population_stability and the publication): no policy, quarantine or
    segments line, a failed check without a description still listed, ERROR before WARN."""
    made = [
        Materialized("population_stability", {"dagster/row_count": 15}),
        Materialized("published_snapshot"),
    ]
    checks = [
        CheckResult("population_stability", "population_is_stable", False, "WARN", "PSI 0.31"),
        CheckResult("published_snapshot", "made_up", False, "ERROR"),
    ]
    before = {"snapshot": "a", "items": {}, "source": {"path": "book.csv"}}
    text = summary("r1", made, checks, {"Charts": "/s/charts"}, published_line(before, None, "r1"))
    assert text.splitlines() == [
        "Loan pipeline run r1 succeeded: 2 assets from the published tables",
        "Assets, in graph order (each after what it reads), with table rows:",
        "  population_stability         15",
        "  published_snapshot",
        "Checks:    2 evaluated, 2 failed (1 ERROR, 1 WARN)",
        "  ERROR published_snapshot / made_up: failed (the check gave no reason)",
        "  WARN  population_stability / population_is_stable: PSI 0.31",
        "Charts:    /s/charts",
        "Nothing was published: the published snapshot is still a (from book.csv).",
    ]


def test_a_gate_failed_just_under_its_bar_reads_as_failed():
    """The sign comes from the check's verdict and the figures show 4 decimals: a skill of
    0.0096 against a bar of 0.01 does not read as '0.010 >= 0.010'."""
    gate = [
        CheckResult(
            "risk_model",
            "model_beats_base_rate",
            False,
            "ERROR",
            "The model does not beat the base rate.",
            {"brier_skill_vs_base_rate": 0.0096, "min_skill": 0.01},
        ),
        CheckResult("risk_model", "coefficient_signs_agree_with_data", True, "ERROR"),
    ]
    line = policy_line({"policy": "rules-based fallback"}, gate)
    assert "(Brier skill 0.0096 < min_skill 0.0100)" in line, line
