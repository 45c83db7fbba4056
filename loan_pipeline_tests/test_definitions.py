"""The code location loads, and every asset has the key, group, owners, kinds and deps it should."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import yaml
from dagster import AssetKey, validate_run_config

from loan_pipeline.definitions import defs
from loan_pipeline_tests.conftest import PROJECT_ROOT

EXPECTED = {
    # key: (group, deps)
    "raw_loans": ("ingest", set()),
    "validated_loans": ("ingest", {"raw_loans"}),
    "quarantined_loans": ("ingest", {"raw_loans"}),
    "scaled_features": ("features", {"validated_loans"}),
    "cluster_model": ("segmentation", {"validated_loans", "scaled_features"}),
    "borrower_segments": ("segmentation", {"scaled_features", "cluster_model"}),
    "segment_profiles": ("segmentation", {"validated_loans", "borrower_segments", "cluster_model"}),
    "risk_model": ("risk", {"validated_loans", "scaled_features", "borrower_segments"}),
    "risk_scores": ("risk", {"validated_loans", "scaled_features", "risk_model"}),
    "recovery_strategies": (
        "strategy",
        {"validated_loans", "borrower_segments", "risk_scores", "risk_model"},
    ),
    "capacity_gains": ("strategy", {"recovery_strategies", "risk_scores", "validated_loans"}),
    "fairness_report": ("monitoring", {"validated_loans", "recovery_strategies"}),
    "population_stability": ("monitoring", {"validated_loans", "risk_scores", "risk_model"}),
    "model_card": ("reports", {"risk_model", "fairness_report", "chart_calibration"}),
    "strategy_history": ("history", {"recovery_strategies", "validated_loans"}),
    "roll_rates": ("history", {"strategy_history"}),
    "arrears_forecast": ("history", {"strategy_history", "roll_rates"}),
    "cure_rates": ("history", {"strategy_history"}),
    "strategy_backtest": ("history", {"strategy_history"}),
    "challenger_uplift": ("history", {"strategy_history"}),
    "chart_k_selection": ("charts", {"cluster_model"}),
    "chart_calibration": ("charts", {"risk_scores"}),
    "chart_loan_amount_distribution": ("charts", {"validated_loans"}),
    "chart_payment_history_recovery": ("charts", {"validated_loans"}),
    "chart_missed_payments_recovery": ("charts", {"validated_loans"}),
    "chart_income_loan_recovery": ("charts", {"validated_loans"}),
    "chart_correlation_heatmap": ("charts", {"validated_loans"}),
    "chart_borrower_segments": (
        "charts",
        {"validated_loans", "borrower_segments", "cluster_model"},  # its title: the verdict
    ),
    "chart_capacity_gains": ("charts", {"capacity_gains"}),
    "chart_roll_rates": ("charts", {"roll_rates"}),
    "chart_strategy_backtest": ("charts", {"strategy_backtest"}),
}
# the last step of every run depends on every other asset
PUBLISHED = "published_snapshot"
EXPECTED[PUBLISHED] = ("publication", set(EXPECTED))


def test_asset_keys_groups_and_deps():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(EXPECTED)
    for key, (group, deps) in EXPECTED.items():
        node = graph.get(AssetKey(key))
        assert node.group_name == group, key
        assert {p.to_user_string() for p in node.parent_keys} == deps, key


def test_every_asset_has_description_owner_kinds():
    for spec in defs.resolve_all_asset_specs():
        key = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 20, key
        assert spec.owners, key
        assert spec.kinds, key
        if spec.metadata.get("dagster/column_schema") is None:
            assert key in {
                "cluster_model",
                "risk_model",
                "model_card",
                "strategy_history",
                PUBLISHED,
            } or key.startswith("chart_"), key


def test_tables_carry_their_pandera_schema():
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    columns = [c.name for c in specs["validated_loans"].metadata["dagster/column_schema"].columns]
    assert columns[:2] == ["Borrower_ID", "Age"] and len(columns) == 21
    assert all(
        c.description for c in specs["validated_loans"].metadata["dagster/column_schema"].columns
    )


def test_jobs_and_default_executor():
    full = defs.resolve_job_def("full_refresh")
    charts = defs.resolve_job_def("charts_only")
    assert {k.to_user_string() for k in full.asset_layer.executable_asset_keys} == set(EXPECTED)
    assert {k.to_user_string() for k in charts.asset_layer.executable_asset_keys} == {
        k for k, (g, _) in EXPECTED.items() if g == "charts"
    } | {PUBLISHED}
    assert full.executor_def.name == "in_process_by_default"
    resolved = validate_run_config(full, {})
    assert list(resolved["execution"]["in_process_by_default"]) == ["in_process"]
    multi = validate_run_config(
        full, {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}
    )
    assert list(multi["execution"]["in_process_by_default"]) == ["multiprocess"]


def test_workspace_and_pyproject_name_the_code_location():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    assert module["module_name"] == "loan_pipeline.definitions" and module["attribute"] == "defs"
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["module_name"] == "loan_pipeline.definitions"


def test_policies_code_versions_tags_automation_freshness():
    from dagster import AutomationCondition

    from loan_pipeline.versioning import code_version

    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    for key, spec in specs.items():
        assert spec.code_version == code_version(), key
        assert spec.tags["domain"] == "loan-recovery" and spec.tags["stage"] == spec.group_name, key
        follows = spec.group_name in {"charts", "monitoring", "reports", "history", "publication"}
        assert (spec.automation_condition == AutomationCondition.eager()) == follows, key
    assert specs["recovery_strategies"].freshness_policy is not None
    assert all(s.freshness_policy is None for k, s in specs.items() if k != "recovery_strategies")
    owners = {k: s.owners for k, s in specs.items()}
    assert owners["raw_loans"] == ["team:data-engineering"]
    assert owners["risk_model"] == ["team:credit-risk"]
    kinds = {k: s.kinds for k, s in specs.items()}
    assert kinds["validated_loans"] == {"pandas", "pandera", "duckdb"}
    assert kinds["cluster_model"] == {"scikit-learn"}
    assert kinds["chart_calibration"] == {"seaborn", "matplotlib"}


def test_schedules_sensors_checks_and_retry():
    assert {s.name for s in defs.schedules} == {"daily_refresh"}
    assert {s.name for s in defs.sensors} == {
        "incoming_loan_files",
        "move_processed_files",
        "follow_upstream_changes",
    }
    from dagster import DefaultSensorStatus

    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in defs.sensors)
    schedule = defs.resolve_schedule_def("daily_refresh")
    assert schedule.job_name == "full_refresh" and schedule.cron_schedule == "0 6 * * *"
    sensor = defs.resolve_sensor_def("incoming_loan_files")
    assert sensor.job_name == "full_refresh" and sensor.minimum_interval_seconds == 30
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("raw_loans", "loan_book_file_is_usable"),
        ("validated_loans", "quarantine_share_below_threshold"),
        ("cluster_model", "chosen_k_is_stable"),
        ("recovery_strategies", "every_borrower_has_a_strategy"),
        ("recovery_strategies", "policy_is_as_expected"),
        ("recovery_strategies", "every_strategy_has_a_reason"),
        ("risk_model", "model_beats_base_rate"),
        ("risk_model", "coefficient_signs_agree_with_data"),
        ("fairness_report", "no_unexplained_strategy_gap"),
        ("population_stability", "population_is_stable"),
        ("roll_rates", "rows_sum_to_one"),
    }
    blocking = {
        (k.asset_key.to_user_string(), k.name)
        for k in graph.asset_check_keys
        if graph.get_check_spec(k).blocking
    }
    assert blocking == {
        ("raw_loans", "loan_book_file_is_usable"),
        ("validated_loans", "quarantine_share_below_threshold"),
    }
    # no blanket retry: a lock, a full disk or a bad file fails at once with its own message;
    # only a transient read error is retried (RetryRequested in the step)
    ingest_op = defs.resolve_job_def("full_refresh").graph.node_named("ingest_loan_book").definition
    assert ingest_op.retry_policy is None


def test_launchpad_config_is_typed_and_validated():
    """Types are checked by the launchpad before a run starts; ranges by the Config class
    (pydantic) when the step starts, with a message naming the field and its bound."""
    import pytest
    from dagster import DagsterInvalidConfigError
    from pydantic import ValidationError

    from loan_pipeline import settings

    full = defs.resolve_job_def("full_refresh")
    good = {
        "ops": {
            "ingest_loan_book": {"config": {"csv_path": "data/x.csv", "max_quarantine_share": 0.1}},
            "scaled_features": {"config": {"columns": ["Loan_Amount", "Days_Past_Due"]}},
            "cluster_model": {"config": {"k": 5}},
            "recovery_strategies": {"config": {"legal_above": 0.8, "settlement_from": 0.4}},
        },
        "resources": {"analysis": {"config": {"method": "notebook"}}},
    }
    validate_run_config(full, good)
    capacity = {"assignment": "capacity", "legal_capacity": 40, "ranking_key": "risk_score"}
    validate_run_config(full, {"ops": {"recovery_strategies": {"config": capacity}}})
    for op, bad in (
        ("recovery_strategies", {"assignment": "whoever shouts loudest"}),
        ("recovery_strategies", {"ranking_key": "Loan_Amount"}),
        ("cluster_model", {"k": "four"}),
        ("scaled_features", {"columns": "Loan_Amount"}),
        ("ingest_loan_book", {"max_quarantine_share": "high"}),
        ("cluster_model", {"no_such_setting": 1}),
    ):
        with pytest.raises(DagsterInvalidConfigError):
            validate_run_config(full, {"ops": {op: {"config": bad}}})
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(full, {"resources": {"analysis": {"config": {"method": "magic"}}}})
    for config_class, bad, message in (
        (settings.ClusterConfig, {"k": 1}, "greater than or equal to 2"),
        (settings.IngestConfig, {"max_quarantine_share": 2.0}, "less than or equal to 1"),
        (settings.StrategyConfig, {"legal_above": 1.5}, "less than or equal to 1"),
        (settings.StrategyConfig, {"legal_capacity": -1}, "greater than or equal to 0"),
    ):
        with pytest.raises(ValidationError, match=message):
            config_class(**bad)


def test_the_strategy_configs_choices_are_the_analysis_own():
    """settings.py imports nothing of the project's, so the launchpad's choices of ranking key
    are written there again: they must stay the ones core.strategy knows."""
    import typing

    from loan_pipeline import domain, settings

    field = settings.StrategyConfig.model_fields["ranking_key"]
    assert list(typing.get_args(field.annotation)) == domain.RANKING_KEYS
    assert field.default == domain.RANKING_KEYS[0]
    assert settings.StrategyConfig().assignment == "bands"  # the default policy stays the bands


def test_loading_the_code_location_imports_no_heavy_library():
    """Defining the assets stays cheap: pandas, pandera, numpy, scikit-learn, DuckDB, Arrow and
    matplotlib are imported by the steps that use them, not when Dagster loads the code."""
    heavy = ["pandas", "pandera", "numpy", "sklearn", "duckdb", "pyarrow", "matplotlib", "scipy"]
    code = (
        "import sys, loan_pipeline.definitions as d; d.defs.resolve_all_asset_specs(); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_schema_catalog_is_the_schema_modules_own():
    """schema_catalog.json (read at definition time for the Columns tab) equals what the pandera
    models say now; after changing a model, `python -m loan_pipeline.schemas` regenerates it."""
    import json

    from loan_pipeline.schemas import CATALOG_PATH, catalog

    assert json.loads(CATALOG_PATH.read_text()) == catalog()


def test_the_columns_tab_shows_each_tables_schema():
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    schema = specs[AssetKey("validated_loans")].metadata["dagster/column_schema"]
    columns = {c.name: c for c in schema.columns}
    assert columns["Borrower_ID"].constraints.unique
    assert columns["Borrower_ID"].type == "string[pyarrow]"
    assert any("isin" in check for check in columns["Gender"].constraints.other)


def test_heavy_steps_are_in_the_heavy_pool():
    """The steps that load the machine (or, later, the cluster) share one concurrency pool, which
    the instance limits (docs/deploy/dagster.yaml); the light ones are in none."""
    from dagster._core.execution.api import create_execution_plan

    from loan_pipeline import settings

    heavy = {
        "ingest_loan_book",
        "scaled_features",
        "cluster_model",
        "borrower_segments",
        "risk_model",
        "risk_scores",
        "recovery_strategies",
        "capacity_gains",
        "draw_charts",
        "population_stability",
        "fairness_report",
    }
    assert settings.HEAVY_POOL == "loan_pipeline_heavy"
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key).assets_def.node_def
        assert node.pools == ({settings.HEAVY_POOL} if node.name in heavy else set()), key
    # and the steps of both jobs carry it, so an executor claims a slot for each
    for job in ("full_refresh", "charts_only"):
        plan = create_execution_plan(defs.resolve_job_def(job))
        steps = {s.key: s.pool for s in plan.get_all_steps_in_topo_order()}
        assert steps == {k: settings.HEAVY_POOL if k in heavy else None for k in steps}, job
    assert steps == {
        "draw_charts": settings.HEAVY_POOL,
        "draw_history_charts": None,
        PUBLISHED: None,
    }
