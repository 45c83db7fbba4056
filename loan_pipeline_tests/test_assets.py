"""The whole graph materialized in-process on the shipped sample and the reference data set."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from PIL import Image

from loan_pipeline import schemas, settings
from loan_pipeline.core import fingerprint
from loan_pipeline.domain import STRATEGIES

TABLES = {
    "raw_loans": schemas.RawLoans,
    "validated_loans": schemas.LoanBook,
    "quarantined_loans": schemas.QuarantinedLoans,
    "scaled_features": schemas.ScaledFeatures,
    "borrower_segments": schemas.BorrowerSegments,
    "risk_scores": schemas.RiskScores,
    "recovery_strategies": schemas.RecoveryStrategies,
    "capacity_gains": schemas.CapacityGains,
    "segment_profiles": schemas.SegmentProfiles,
    "fairness_report": schemas.FairnessReport,
    "population_stability": schemas.PopulationStability,
    "roll_rates": schemas.RollRates,
    "arrears_forecast": schemas.ArrearsForecast,
    "cure_rates": schemas.CureRates,
    "strategy_backtest": schemas.StrategyBacktest,
    "challenger_uplift": schemas.ChallengerUplift,
}
# tables that compare this snapshot with the one before: empty on a storage's first run
COMPARED_TABLES = {
    "roll_rates",
    "arrears_forecast",
    "cure_rates",
    "strategy_backtest",
    "challenger_uplift",
}
# tables with one row per borrower (on a Dask cluster: the partitioned ones)
BORROWER_TABLES = sorted(settings.PARTITIONED_TABLES)
CHARTS = [
    "chart_loan_amount_distribution",
    "chart_payment_history_recovery",
    "chart_missed_payments_recovery",
    "chart_income_loan_recovery",
    "chart_borrower_segments",
    "chart_correlation_heatmap",
    "chart_k_selection",
    "chart_calibration",
    "chart_capacity_gains",
    "chart_roll_rates",
    "chart_strategy_backtest",
]
ALL_ASSETS = {
    *TABLES,
    "cluster_model",
    "risk_model",
    "model_card",
    "strategy_history",
    "published_snapshot",
    *CHARTS,
}


@pytest.fixture(params=["sample_run", "reference_run"])
def run(request):
    return request.getfixturevalue(request.param)


def test_every_asset_materialized(run):
    keys = {e.asset_key.to_user_string() for e in run.result.get_asset_materialization_events()}
    assert keys == ALL_ASSETS


def test_every_table_in_duckdb_nonempty_and_schema_valid(run):
    assert run.tables() == sorted(
        [*TABLES, "recovery_strategies_history", "latest_recovery_strategies"]
    )
    n_borrowers = len(run.table("validated_loans"))
    assert n_borrowers > 0
    for name, model in TABLES.items():
        df = run.table(name)
        if name == "quarantined_loans":
            assert df.empty, "clean input quarantines nothing"
        elif name in COMPARED_TABLES:
            assert df.empty, f"{name}: one snapshot, nothing to compare"
        elif name in BORROWER_TABLES:
            assert len(df) == n_borrowers, name
        else:
            assert len(df) > 0, name
        schemas.validate(df, model, source=name)  # raises SchemaViolation on any broken rule


def test_charts_are_pngs_of_expected_size(run):
    seen = set()
    for key in CHARTS:
        path = run.storage / "charts" / f"{key}.png"
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), key
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.width >= 500 and image.height >= 350, (key, image.size)
        seen.add(data)
    assert len(seen) == len(CHARTS), "two charts are byte-identical copies"


def test_chart_metadata_embeds_the_png(run):
    events = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization
        for e in run.result.get_asset_materialization_events()
    }
    for key in CHARTS:
        md = events[key].metadata["chart"].value
        assert md.startswith(f"![{key}](data:image/png;base64,iVBORw0KGgo")


def test_strategies_follow_bands_and_export_matches(run):
    strategies = run.table("recovery_strategies")
    policy = set(strategies["policy"])
    assert len(policy) == 1
    expected = pd.Series(STRATEGIES[2], index=strategies.index)
    if policy == {"score bands"}:
        scores = strategies["risk_score"]
        expected[scores >= 0.5] = STRATEGIES[1]
        expected[scores > 0.75] = STRATEGIES[0]
    else:  # the model did not beat the base rate (the reference data set: see the model card)
        assert policy == {"rules-based fallback"}
        loans = run.table("validated_loans").set_index("Borrower_ID").loc[strategies["Borrower_ID"]]
        dpd, missed = loans["Days_Past_Due"].to_numpy(), loans["Num_Missed_Payments"].to_numpy()
        expected[(dpd > 30) | (missed >= 2)] = STRATEGIES[1]
        expected[(dpd > 90) | (missed >= 6)] = STRATEGIES[0]
    assert (strategies["recovery_strategy"] == expected).all()
    exported = pd.read_csv(run.storage / "exports" / "recovery_strategies.csv")
    assert exported["Borrower_ID"].tolist() == strategies["Borrower_ID"].tolist()
    assert exported["recovery_strategy"].tolist() == strategies["recovery_strategy"].tolist()


def test_models_on_disk_and_metadata(run):
    events = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in run.result.get_asset_materialization_events()
    }
    assert (run.storage / "models" / "cluster_model.pkl").stat().st_size > 0
    assert (run.storage / "models" / "risk_model.pkl").stat().st_size > 0
    cluster = events["cluster_model"]
    assert 2 <= cluster["k"].value <= 8  # chosen from the data
    assert cluster["k"].value == len(run.table("segment_profiles"))
    assert -1 <= cluster["silhouette"].value <= 1
    assert sum(cluster["cluster_sizes"].value.values()) == len(run.table("validated_loans"))
    risk = events["risk_model"]
    for metric in ("model_roc_auc", "base_rate_brier", "days_past_due_only_roc_auc", "model_brier"):
        assert 0 <= risk[metric].value <= 1, metric
    assert "## Excluded columns, and why" in risk["model_card"].value
    scaled = events["scaled_features"]
    assert set(scaled["scaler_means"].value) == set(scaled["features"].value)
    for table in TABLES:
        assert events[table]["dagster/row_count"].value == len(run.table(table))
        if table != "quarantined_loans":
            assert "|" in events[table]["preview"].value


def test_the_shipped_sample_says_it_has_no_stable_segmentation(sample_run):
    """The shipped sample's columns are drawn independently of each other (docs/sample_data.md):
    it has no groups. Its segments are shown, and every place that shows them says they are a
    convenient split: the model's metadata, the check, the segment tables (the command line:
    test_cli)."""
    done = sample_run.materialized()
    cluster = done["cluster_model"]
    verdict = f"no stable segmentation: k={cluster['k'].value} shown as a convenient split"
    assert cluster["segmentation_verdict"].value == verdict
    assert cluster["k_chosen_by"].value.startswith("data: no k is both reproducible")
    (check,) = [
        c
        for c in sample_run.result.get_asset_check_evaluations()
        if c.check_name == "chosen_k_is_stable"
    ]
    assert not check.passed and check.description.startswith(verdict)
    assert done["borrower_segments"]["segmentation_verdict"].value == verdict
    assert done["segment_profiles"]["segmentation_verdict"].value == verdict
    assert set(sample_run.table("segment_profiles")["segmentation_verdict"]) == {
        "no stable segmentation"
    }


def test_validated_loans_equal_the_csv(run):
    """Nothing is lost or altered between the file and the validated table."""
    source = run.materialized()["raw_loans"]["source_path"].value
    expected = pd.read_csv(source)
    got = run.table("validated_loans")
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected, check_dtype=False, check_exact=False, rtol=1e-12
    )


def test_too_many_bad_rows_stop_the_run_and_keep_previous_outputs(tmp_path, sample_run):
    """Above the quarantine threshold the blocking check fails: nothing downstream runs, no table
    is written, and every table, model, chart and export of the previous good run is unchanged.
    The previous good run: a copy of the session's run on the sample (its storage as it left it)."""
    import shutil

    from loan_pipeline_tests.conftest import SAMPLE_CSV, published_files, run_pipeline

    storage = tmp_path / "storage"
    shutil.copytree(sample_run.storage, storage, symlinks=True)
    before = published_files(storage)
    assert before == published_files(sample_run.storage)
    tables_before = {t: sample_run.table(t) for t in sample_run.tables()}

    lines = SAMPLE_CSV.read_text().splitlines()
    for i in range(1, 31):  # 30 of 500 rows (6%) get an unknown loan type
        for loan_type in ("Personal", "Home", "Auto", "Business"):
            lines[i] = lines[i].replace(f",{loan_type},", ",Timeshare,")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("\n".join(lines) + "\n")
    bad = run_pipeline(bad_csv, storage)
    assert not bad.result.success
    failure = bad.result.get_step_failure_events()
    assert [e.step_key for e in failure] == ["ingest_loan_book"]
    message = failure[0].step_failure_data.user_failure_data.description
    assert message.startswith(
        f"{bad_csv}: 30 of 500 rows (6.0%) failed validation, over the 5.0% threshold"
    )
    assert (
        "column Loan_Type, rule isin(['Personal', 'Home', 'Auto', 'Business']): 30 row(s); e.g. line 2: 'Timeshare'"
        in message
    )
    checks = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in bad.result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["quarantine_share_below_threshold"].passed is False
    assert "Timeshare" in checks["quarantine_share_below_threshold"].metadata["failure_cases"].value
    assert bad.materialized() == {}  # nothing written, nothing downstream
    after = published_files(storage)
    assert after == before
    for table, frame in tables_before.items():
        pd.testing.assert_frame_equal(bad.table(table), frame)


def test_tables_report_column_lineage(sample_run):
    md = sample_run.materialized()
    for table in (
        "validated_loans",
        "scaled_features",
        "borrower_segments",
        "risk_scores",
        "recovery_strategies",
        "segment_profiles",
    ):
        assert "dagster/column_lineage" in md[table], table
    lineage = md["recovery_strategies"]["dagster/column_lineage"].value.deps_by_column
    assert [(d.asset_key.to_user_string(), d.column_name) for d in lineage["segment_name"]] == [
        ("borrower_segments", "segment_name")
    ]
    assert ("risk_scores", "risk_score") in {
        (d.asset_key.to_user_string(), d.column_name) for d in lineage["recovery_strategy"]
    }
    scores = md["risk_scores"]["dagster/column_lineage"].value.deps_by_column
    assert ("validated_loans", "Days_Past_Due") in {
        (d.asset_key.to_user_string(), d.column_name) for d in scores["risk_score"]
    }
    assert not any(d.column_name == "Collection_Method" for deps in scores.values() for d in deps)


def column_spy(loaded: dict):
    """``TableIOManager.load_input`` noting the columns each step loaded of each input in
    ``loaded``: (step, table, whether outputs are held in memory) -> columns."""
    from loan_pipeline.io.handoff import RUN_FRAMES
    from loan_pipeline.io.tables import TableIOManager

    real_load = TableIOManager.load_input

    def spy(self, context):
        frame = real_load(self, context)
        held = RUN_FRAMES.max_bytes > 0
        loaded[(context.op_def.name, context.asset_key.path[-1], held)] = list(frame.columns)
        return frame

    return spy


@pytest.fixture(scope="module")
def held_run(tmp_path_factory) -> dict:
    """A run on the sample as a run goes (outputs held in memory for their readers), watched:
    ``handed``, what each in-memory hand-off gave a step (by table, or "model:" + model);
    ``loaded``, the columns each step loaded of each input ((step, table, held) -> columns);
    ``left``, what stayed in memory after the run."""
    from loan_pipeline.io.handoff import RUN_FRAMES
    from loan_pipeline.io.tables import TableIOManager
    from loan_pipeline_tests.conftest import SAMPLE_CSV, run_pipeline

    handed: dict[str, list] = {}
    loaded: dict[tuple[str, str, bool], list[str]] = {}
    real_get = RUN_FRAMES.get

    def spy_get(run_id, name, reader=None):
        obj = real_get(run_id, name, reader)
        if obj is not None:
            handed.setdefault(name, []).append(obj)
        return obj

    with pytest.MonkeyPatch.context() as m:
        m.setattr(RUN_FRAMES, "get", spy_get)
        m.setattr(TableIOManager, "load_input", column_spy(loaded))
        run = run_pipeline(SAMPLE_CSV, tmp_path_factory.mktemp("held"))
        left = dict(RUN_FRAMES.frames)
    assert run.result.success
    return {"run": run, "handed": handed, "loaded": loaded, "left": left}


def test_in_memory_hand_off_equals_what_duckdb_stores(held_run):
    """In-process steps get the tables and models the run just wrote from memory, not from
    DuckDB or the pickle files; what they get must be exactly what is stored (values and dtypes),
    so the in-process and the multiprocess executors compute the same thing. An output is held
    only until its last reader has loaded it: nothing stays in memory after the run, and a
    table no step reads (raw_loans, quarantined_loans) is never held."""
    import duckdb

    from loan_pipeline.store.tables import arrow_to_pandas

    run, handed = held_run["run"], held_run["handed"]
    assert held_run["left"] == {}  # every held output was read by its last reader, then dropped
    tables = {k for k in handed if not k.startswith("model:")}
    assert {"validated_loans", "scaled_features", "borrower_segments", "risk_scores"} <= tables
    assert not tables & {"raw_loans", "quarantined_loans"}
    assert len(handed["validated_loans"]) >= 8  # one load per reading step, none from DuckDB
    with duckdb.connect(str(run.storage / "warehouse.duckdb"), read_only=True) as con:
        for table in sorted(tables):
            stored = arrow_to_pandas(con.sql(f'SELECT * FROM "{table}"').to_arrow_table())
            for in_memory in handed[table]:
                pd.testing.assert_frame_equal(
                    in_memory.reset_index(drop=True), stored, check_exact=True
                )
    # fitted models are handed on as the objects that were pickled
    for model in ("cluster_model", "risk_model"):
        stored = (run.storage / "models" / f"{model}.pkl").read_bytes()
        assert handed[f"model:{model}"]
        for obj in handed[f"model:{model}"]:
            assert fingerprint.pickled(obj) == stored


def test_steps_load_only_the_columns_they_read(held_run, tmp_path, monkeypatch):
    """A step that reads a few columns of the loan book loads just those, from memory or from
    DuckDB alike, and a run with nothing held in memory (every input read back from the
    warehouse, as on a book too large to hold) stores the same tables."""
    import duckdb

    from loan_pipeline.io.handoff import RUN_FRAMES
    from loan_pipeline.io.tables import TableIOManager
    from loan_pipeline.store.tables import arrow_to_pandas
    from loan_pipeline_tests.conftest import SAMPLE_CSV, run_pipeline

    loaded = dict(held_run["loaded"])  # the held run's loads, and this run's below
    monkeypatch.setattr(TableIOManager, "load_input", column_spy(loaded))
    monkeypatch.setattr(RUN_FRAMES, "max_bytes", 0)  # nothing held: every input from DuckDB
    stored_run = run_pipeline(SAMPLE_CSV, tmp_path / "stored")
    assert stored_run.result.success
    for held in (True, False):
        assert loaded[("fairness_report", "validated_loans", held)] == [
            "Borrower_ID",
            "Gender",
            "Age",
            "Recovery_Status",
        ]
        assert loaded[("fairness_report", "recovery_strategies", held)] == [
            "Borrower_ID",
            "risk_score",
            "recovery_strategy",
        ]
        chart_columns = loaded[("draw_charts", "validated_loans", held)]
        assert "Loan_Amount" in chart_columns and "Collection_Method" not in chart_columns
        risk_columns = loaded[("risk_model", "validated_loans", held)]
        assert not {"Collection_Attempts", "Collection_Method", "Legal_Action_Taken"} & set(
            risk_columns
        )
        # a step with no column list still gets the whole table
        assert len(loaded[("borrower_segments", "scaled_features", held)]) > 2

    tables = ["borrower_segments", "risk_scores", "recovery_strategies", "fairness_report"]
    for table in tables:
        frames = []
        for run in (held_run["run"], stored_run):
            with duckdb.connect(str(run.storage / "warehouse.duckdb"), read_only=True) as con:
                frames.append(arrow_to_pandas(con.sql(f'SELECT * FROM "{table}"').to_arrow_table()))
        pd.testing.assert_frame_equal(*frames, check_exact=True)
