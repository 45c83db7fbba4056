"""Collections over time, as a lender delivers it: three consecutive snapshots of one book dropped
one after the other in the incoming folder, each run by the incoming-file sensor's request with
the standing run config of LOAN_PIPELINE_RUN_CONFIG (a champion/challenger experiment). Each
follow-up is drawn from the previous run's export with a planted effect of settlement offers and
of legal action on P(Fully Recovered).

The first run has nothing to compare and says so; the second and third publish the roll rates,
the forecast, the cure rates, the strategy back-test and the challenger's uplift of t0 -> t1 and
t1 -> t2, equal to the core functions applied to the two CSVs (with the earlier run's segments,
scores and strategies); the back-test and the uplift see the planted effects within their
intervals; a borrower's arm never changes."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from dagster import (
    DagsterInstance,
    SkipReason,
    build_run_status_sensor_context,
    build_sensor_context,
)

from loan_pipeline import automation, sample, settings
from loan_pipeline.assets.history import NO_PREVIOUS
from loan_pipeline.core import backtest as bt
from loan_pipeline.core import experiment as ex
from loan_pipeline.core import roll_rates as rr
from loan_pipeline.core.arrears import arrears_bucket
from loan_pipeline.core.follow_up import outcome_probabilities, read_book, shifted_probabilities
from loan_pipeline.core.strategy import assign_strategy, rules_based
from loan_pipeline.domain import (
    POLICY_FALLBACK,
    STRATEGY_LEGAL,
    STRATEGY_REMINDERS,
    STRATEGY_SETTLEMENT,
)
from loan_pipeline.settings import StrategyConfig
from loan_pipeline.versioning import file_sha256
from loan_pipeline_tests.conftest import PipelineRun, environment

SNAPSHOTS = ["t0.csv", "t1.csv", "t2.csv"]
SNAPSHOT_COLUMNS = ["previous_snapshot", "snapshot"]
NEW = 50  # newcomers in each follow-up
# the planted effects: + 0.10 on P(Fully Recovered) of the loans resolving under settlement
# offers (the challenger) and under legal action (a champion)
EFFECT = 0.10
EFFECTS = {STRATEGY_SETTLEMENT: EFFECT, STRATEGY_LEGAL: EFFECT}
SHARE = 0.5
CHALLENGER = STRATEGY_SETTLEMENT
# legal action and reminders both eligible: more borrowers resolve in the experiment than with
# legal action alone (the default), so the interval is narrower on a small book
ELIGIBLE = ["legal action", "reminders"]
STANDING_CONFIG = {
    "ops": {
        "recovery_strategies": {
            "config": {
                "experiment": {
                    "name": "test-exp",
                    "share": SHARE,
                    "eligible": ELIGIBLE,
                    "challenger_strategy": "settlement",
                },
            }
        }
    }
}
# each run's tables that the next run overwrites in the catalog, kept as the run published them
KEPT_TABLES = [
    "recovery_strategies",
    "roll_rates",
    "arrears_forecast",
    "cure_rates",
    "strategy_backtest",
    "challenger_uplift",
]


@pytest.fixture(scope="module")
def over_time(tmp_path_factory):
    """3,000 loans, 70 % open (t0), then two follow-ups (5 % of the open gone, 50 new each),
    each drawn from the previous run's export with EFFECTS; each dropped in the incoming folder,
    requested by a sensor tick and run as the request says, its file moved once it succeeded."""
    folder = tmp_path_factory.mktemp("over_time")
    lender, incoming, processed = folder / "lender", folder / "incoming", folder / "processed"
    storage = folder / "storage"
    lender.mkdir()
    incoming.mkdir()
    run_yaml = folder / "run.yaml"
    run_yaml.write_text(yaml.safe_dump(STANDING_CONFIG))
    instance = DagsterInstance.ephemeral()
    from loan_pipeline.definitions import defs

    ticks, runs, exports, tables = [], [], [], []
    cursor = None
    with environment(
        LOAN_PIPELINE_INCOMING=str(incoming),
        LOAN_PIPELINE_PROCESSED=str(processed),
        LOAN_PIPELINE_STORAGE=str(storage),
        LOAN_PIPELINE_RUN_CONFIG=str(run_yaml),
    ):
        for i, name in enumerate(SNAPSHOTS):
            book = lender / name
            if i == 0:
                sample.main(["--rows", "3000", "--seed", "11", "--open-fraction", "0.7",
                             "--out", str(book)])  # fmt: skip
            else:
                sample.main(["--follow-up", str(lender / SNAPSHOTS[i - 1]), "--seed", str(11 + i),
                             "--vanish", "0.05", "--new", str(NEW), "--strategies",
                             str(exports[-1]), "--strategy-effect", f"Settlement offers={EFFECT}",
                             "--strategy-effect", f"legal action={EFFECT}",
                             "--out", str(book)])  # fmt: skip
            shutil.copy(book, incoming / name)
            context = automation_tick(cursor, instance)
            cursor = context["cursor"]
            ticks.append(context)
            [request] = context["requests"]
            result = defs.resolve_job_def(request.job_name or "full_refresh").execute_in_process(
                run_config=request.run_config,
                tags=request.tags,
                instance=instance,
                raise_on_error=False,
            )
            run = PipelineRun(result=result, storage=storage, instance=instance)
            assert result.success, f"the run of {name} failed"
            tables.append({table: run.table(table) for table in KEPT_TABLES})
            export = folder / f"export_{name}"
            shutil.copy(storage / "exports" / "recovery_strategies.csv", export)
            exports.append(export)
            runs.append(run)
            # what the run-status sensor does once the run succeeded: the file leaves incoming
            move_processed(result, instance)
        after_last = automation_tick(cursor, instance)
        history = runs[-1].table("recovery_strategies_history")
    return {
        "books": [read_book(lender / name) for name in SNAPSHOTS],
        "incoming": incoming,
        "processed": processed,
        "run_yaml": run_yaml,
        "ticks": ticks,
        "after_last": after_last,
        "runs": runs,
        "tables": tables,
        "exports": [pd.read_csv(e, dtype=str, keep_default_na=False) for e in exports],
        "history": history,
        "charts": storage / "charts",
    }


def automation_tick(cursor: str | None, instance: DagsterInstance) -> dict:
    from loan_pipeline.definitions import defs

    # the definitions, as the code server gives them: the standing config is checked on its job
    context = build_sensor_context(cursor=cursor, instance=instance, definitions=defs)
    result = automation.incoming_loan_files(context)
    return {
        "requests": result if isinstance(result, list) else [],
        "result": result,
        "cursor": context.cursor,
    }


def move_processed(result, instance: DagsterInstance) -> None:
    context = build_run_status_sensor_context(
        sensor_name="move_processed_files",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=result.get_run_success_event(),
    )
    automation.move_processed_files(context)


def snapshot_of(book: pd.DataFrame, strategies: pd.DataFrame | None) -> pd.DataFrame:
    """What the core functions read of a snapshot, from its CSV (and, for the groups at t, the
    run's published strategies)."""
    out = book[["Borrower_ID", "Outstanding_Loan_Amount", "Days_Past_Due", "Recovery_Status"]]
    out = out.assign(arrears_bucket=arrears_bucket(book))
    if strategies is not None:
        groups = strategies[["Borrower_ID", "segment_name", "recovery_strategy", "risk_score"]]
        out = out.merge(groups, on="Borrower_ID", how="left")
    return out


def pair(over_time, i: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Snapshot i-1 (with run i-1's strategies) and snapshot i, as the core functions read them."""
    books = over_time["books"]
    before = snapshot_of(books[i - 1], over_time["tables"][i - 1]["recovery_strategies"])
    return before, snapshot_of(books[i], None)


COMPARISONS = pytest.mark.parametrize("i", [1, 2], ids=["t0->t1", "t1->t2"])


# --- the sensor ------------------------------------------------------------------------------


def test_the_sensor_requested_one_run_per_dropped_file_with_the_standing_config(over_time):
    incoming = over_time["incoming"]
    for name, tick in zip(SNAPSHOTS, over_time["ticks"], strict=True):
        [request] = tick["requests"]
        assert request.tags[automation.TAG_FILE] == str(incoming / name)
        assert request.run_key.startswith(f"{name}:")
        assert request.tags[automation.TAG_CONFIG] == str(over_time["run_yaml"])
        ops = request.run_config["ops"]
        assert ops["ingest_loan_book"]["config"] == {"csv_path": str(incoming / name)}
        assert ops["recovery_strategies"] == STANDING_CONFIG["ops"]["recovery_strategies"]
    keys = [tick["requests"][0].run_key for tick in over_time["ticks"]]
    assert len(set(keys)) == len(SNAPSHOTS)
    # nothing left to run: each file ran once and moved on to the processed folder
    assert isinstance(over_time["after_last"]["result"], SkipReason)
    assert sorted(p.name for p in over_time["incoming"].iterdir()) == []
    assert sorted(p.name for p in over_time["processed"].iterdir()) == SNAPSHOTS
    # the runs are the sensor's: tagged with the file and the run config they came from
    for name, run in zip(SNAPSHOTS, over_time["runs"], strict=True):
        tags = run.instance.get_run_by_id(run.result.run_id).tags
        assert tags[automation.TAG_TRIGGER] == "incoming file"
        assert tags[automation.TAG_FILE] == str(incoming / name)


# --- roll rates, forecast, cure rates --------------------------------------------------------


def test_the_first_snapshot_has_nothing_to_compare_and_says_so(over_time):
    first, tables = over_time["runs"][0], over_time["tables"][0]
    for name in ("roll_rates", "arrears_forecast", "cure_rates", "strategy_backtest"):
        assert tables[name].empty, name
        assert first.materialized()[name]["compared"].value == NO_PREVIOUS, name
    checks = first.result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks if c.check_name == "rows_sum_to_one"] == [
        ("rows_sum_to_one", True)
    ]


@COMPARISONS
def test_published_tables_equal_the_core_computation_on_the_two_books(over_time, i):
    books = over_time["books"]
    before, after = pair(over_time, i)
    run, tables = over_time["runs"][i], over_time["tables"][i]

    matrix = tables["roll_rates"]
    assert matrix["previous_snapshot"].str.startswith(f"{SNAPSHOTS[i - 1]}@").all()
    assert matrix["snapshot"].str.startswith(f"{SNAPSHOTS[i]}@").all()
    expected = rr.roll_rate_matrix(before, after)
    pd.testing.assert_frame_equal(
        matrix.drop(columns=SNAPSHOT_COLUMNS), expected, check_dtype=False, rtol=1e-9
    )

    cures = tables["cure_rates"].drop(columns=SNAPSHOT_COLUMNS)
    pd.testing.assert_frame_equal(cures, rr.cure_rates(before, after), check_dtype=False, rtol=1e-9)

    forecast = tables["arrears_forecast"].drop(columns=SNAPSHOT_COLUMNS)
    pd.testing.assert_frame_equal(
        forecast, rr.flow_forecast(expected, rr.bucket_mix(after)), check_dtype=False, rtol=1e-9
    )

    # borrowers who left or arrived are counted, not dropped
    metadata = run.materialized()["roll_rates"]
    gone = set(books[i - 1]["Borrower_ID"]) - set(books[i]["Borrower_ID"])
    new = set(books[i]["Borrower_ID"]) - set(books[i - 1]["Borrower_ID"])
    assert metadata["left_the_book"].value == len(gone) > 0
    assert metadata["new_to_the_book"].value == len(new) == NEW
    assert metadata["borrowers_in_both"].value == len(books[i - 1]) - len(gone)
    assert f"| new to the book | {NEW} |" in metadata["matrix"].value
    checks = run.result.get_asset_check_evaluations()
    assert [c.passed for c in checks if c.check_name == "rows_sum_to_one"] == [True]


def test_the_last_matrix_compares_t1_with_t2_and_counts_as_pandas_does(over_time):
    """The roll-rate matrix of the third run, against a crosstab of the two CSVs made here with
    pandas alone (the buckets by their documented day ranges, not by the project's function)."""
    t1, t2 = over_time["books"][1], over_time["books"][2]
    matrix = over_time["tables"][2]["roll_rates"]
    sha = {name: file_sha256(over_time["processed"] / name)[:12] for name in SNAPSHOTS}
    assert (matrix["previous_snapshot"] == f"t1.csv@{sha['t1.csv']}").all()
    assert (matrix["snapshot"] == f"t2.csv@{sha['t2.csv']}").all()

    def bucket(book: pd.DataFrame) -> pd.Series:
        edges = [-np.inf, 0, 30, 60, 90, np.inf]
        days = pd.cut(
            book["Days_Past_Due"], edges, labels=["current", "1-30", "31-60", "61-90", "90+"]
        )
        label = days.astype(str).where(book["Recovery_Status"].isna(), "resolved")
        return label.set_axis(book["Borrower_ID"])

    moves = pd.DataFrame({"from": bucket(t1), "to": bucket(t2)}).fillna(
        {"from": "new to the book", "to": "left the book"}
    )
    counts = pd.crosstab(moves["from"], moves["to"]).stack()
    published = matrix.set_index(["from_bucket", "to_bucket"])["borrowers"]
    # every pair pandas counts is in the matrix with its count; the matrix's other cells are 0
    assert published.reindex(counts.index).tolist() == counts.tolist()
    assert published.drop(counts.index).eq(0).all()
    assert published.sum() == len(moves)
    for share in ("share", "balance_share"):
        sums = matrix.dropna(subset=[share]).groupby("from_bucket")[share].sum()
        assert np.allclose(sums, 1.0), (share, sums)
    assert matrix.groupby("from_bucket")["share"].sum().size == len(counts.index.levels[0])


def test_the_history_carries_each_snapshots_arrears(over_time):
    history = over_time["history"]
    assert history["snapshot_id"].nunique() == 3
    for book, name in zip(over_time["books"], SNAPSHOTS, strict=True):
        rows = history[history["snapshot_id"].str.startswith(f"{name}@")].set_index("Borrower_ID")
        assert len(rows) > 0, name
        expected = book.set_index("Borrower_ID").loc[rows.index]
        assert (rows["Days_Past_Due"] == expected["Days_Past_Due"]).all()
        assert (
            rows["Recovery_Status"].isna().tolist() == expected["Recovery_Status"].isna().tolist()
        )
        assert rows["arrears_bucket"].tolist() == arrears_bucket(expected).tolist()


def test_the_chart_is_drawn_from_the_published_matrix(over_time):
    png = over_time["charts"] / "chart_roll_rates.png"
    assert png.stat().st_size > 20_000  # a heatmap, not the first run's one line of text
    sizes = [r.materialized()["chart_roll_rates"]["size_bytes"].value for r in over_time["runs"]]
    assert sizes[2] == png.stat().st_size
    assert sizes[0] < 20_000 < sizes[1]


# --- the strategy back-test ------------------------------------------------------------------


@COMPARISONS
def test_the_backtest_equals_the_core_computation_and_sees_the_planted_effects(over_time, i):
    book_t = over_time["books"][i - 1]
    before, after = pair(over_time, i)
    strategies_t = over_time["tables"][i - 1]["recovery_strategies"]
    config = settings.BacktestConfig()
    expected = bt.strategy_backtest(
        before,
        after,
        reference=config.reference_strategy,
        partial_share=config.partial_recovery_share,
        band_width=config.score_band_width,
    )
    published = over_time["tables"][i]["strategy_backtest"]
    assert published["previous_snapshot"].str.startswith(f"{SNAPSHOTS[i - 1]}@").all()
    pd.testing.assert_frame_equal(
        published.drop(columns=SNAPSHOT_COLUMNS), expected, check_dtype=False, rtol=1e-9
    )
    metadata = over_time["runs"][i].materialized()["strategy_backtest"]
    counts = bt.cycle_counts(before, after)
    assert metadata["resolved_in_cycle"].value == counts["resolved_in_cycle"] > 50
    assert metadata["already_resolved_at_t"].value == int(book_t["Recovery_Status"].notna().sum())

    # the champion's strategies are score bands, so legal action and reminders never share a
    # band; the challenger arm puts settlement in the reminders' bands (and legal action's), so
    # settlement alone is compared with reminders for the same risk, and the other pairs that
    # share a band are settlement's with legal action
    assert (strategies_t["policy"] == "score bands").all()
    headline = metadata["headline"].value
    assert "legal action vs reminders: no score band holds both" in headline
    assert "settlement vs reminders, same score band: Fully Recovered" in headline
    adjusted = published[published["group_by"] == "band_adjusted"]
    pairs = list(zip(adjusted["recovery_strategy"], adjusted["reference_strategy"], strict=True))
    assert pairs == [  # the configured reference's first
        (STRATEGY_SETTLEMENT, STRATEGY_REMINDERS),
        (STRATEGY_SETTLEMENT, STRATEGY_LEGAL),
        (STRATEGY_LEGAL, STRATEGY_SETTLEMENT),
        (STRATEGY_REMINDERS, STRATEGY_SETTLEMENT),
    ]
    assert "settlement vs legal action, same score band: Fully Recovered" in headline

    # the planted effects: a strategy's Fully Recovered share is, in expectation, the mean of
    # p' = min(p + effect, 1) over its loans resolving this cycle (p: the generator's own
    # probability at t); the published Wilson interval holds it, overall and in each band
    p = pd.Series(outcome_probabilities(book_t)[:, 0], index=book_t["Borrower_ID"])
    cohort = bt.resolved_cohort(before, after, band_width=config.score_band_width)
    for strategy, effect in EFFECTS.items():
        mine = cohort[cohort["recovery_strategy"] == strategy]
        shifted = (p.loc[mine["Borrower_ID"]] + effect).clip(upper=1).to_numpy()
        rows = published[published["recovery_strategy"] == strategy]
        overall = rows[rows["group_by"] == "all"].iloc[0]
        assert overall["resolved"] == len(mine) > 20
        assert overall["ci_low"] <= shifted.mean() <= overall["ci_high"], strategy
        for band, row in rows[rows["group_by"] == "score_band"].set_index("group").iterrows():
            in_band = (mine["score_band"] == band).to_numpy()
            assert row["resolved"] == in_band.sum()
            assert row["ci_low"] <= shifted[in_band].mean() <= row["ci_high"], (strategy, band)

    # settlement vs reminders pooled over the bands holding both: the interval holds what the
    # generator's probabilities give these borrowers (the planted effect, plus the chance
    # difference of risk between the two strategies' borrowers of a band), and the planted
    # effect itself (settlement's borrowers there are the reminders' challenger arm: random)
    row = adjusted.iloc[0]
    bands = published[
        (published["group_by"] == "score_band")
        & (published["recovery_strategy"] == STRATEGY_SETTLEMENT)
        & published["difference"].notna()
    ]
    weights = bands.set_index("group")["resolved"] / bands["resolved"].sum()
    expected_difference = planted = 0.0
    for band, w in weights.items():
        settled = cohort[
            (cohort["score_band"] == band) & (cohort["recovery_strategy"] == CHALLENGER)
        ]
        reminded = cohort[
            (cohort["score_band"] == band) & (cohort["recovery_strategy"] == STRATEGY_REMINDERS)
        ]
        p_settled = p.loc[settled["Borrower_ID"]]
        shifted = (p_settled + EFFECT).clip(upper=1).mean()
        expected_difference += w * (shifted - p.loc[reminded["Borrower_ID"]].mean())
        planted += w * (shifted - p_settled.mean())
    assert row["difference"] == pytest.approx(
        float((bands["difference"] * bands["resolved"]).sum() / bands["resolved"].sum())
    )
    assert row["difference_low"] <= expected_difference <= row["difference_high"]
    assert planted == pytest.approx(EFFECT, abs=0.01)  # less where p + EFFECT clips at 1
    assert row["difference_low"] <= planted <= row["difference_high"]
    assert row["difference"] > 0


def test_the_backtest_chart_is_drawn_from_the_published_table(over_time):
    png = over_time["charts"] / "chart_strategy_backtest.png"
    sizes = [
        r.materialized()["chart_strategy_backtest"]["size_bytes"].value for r in over_time["runs"]
    ]
    assert png.stat().st_size == sizes[2]
    # points and intervals, not the first run's note
    assert sizes[1] > 2 * sizes[0] and sizes[2] > 2 * sizes[0]


# --- champion/challenger ---------------------------------------------------------------------


@pytest.mark.parametrize("i", [0, 1, 2], ids=SNAPSHOTS)
def test_each_arm_gets_its_strategy_and_the_champion_is_the_policys(over_time, i):
    table = over_time["tables"][i]["recovery_strategies"]
    config = StrategyConfig()
    if (table["policy"] == POLICY_FALLBACK).all():
        loans = over_time["books"][i].set_index("Borrower_ID").loc[table["Borrower_ID"]]
        champion, _ = rules_based(
            loans.reset_index(),
            legal_days=config.fallback_legal_days,
            legal_missed=config.fallback_legal_missed,
            settlement_days=config.fallback_settlement_days,
            settlement_missed=config.fallback_settlement_missed,
        )
    else:
        champion = assign_strategy(
            table["risk_score"],
            legal_above=config.legal_above,
            settlement_from=config.settlement_from,
        )
    assert table["champion_strategy"].tolist() == champion.tolist()
    eligible = table["champion_strategy"].isin([STRATEGY_LEGAL, STRATEGY_REMINDERS]).to_numpy()
    arms = ex.assign_arms(table["Borrower_ID"], "test-exp", SHARE).to_numpy()
    challenger = eligible & (arms == "challenger")
    assert table["experiment_arm"][challenger].eq("challenger").all()
    assert table["experiment_arm"][eligible & ~challenger].eq("champion").all()
    assert table["experiment_arm"][~eligible].isna().all()
    assert table["recovery_strategy"][challenger].eq(CHALLENGER).all()
    assert table["recovery_strategy"][~challenger].tolist() == champion[~challenger].tolist()
    # the share of the eligible in the challenger arm, within binomial error
    n = int(eligible.sum())
    assert abs(challenger.sum() - SHARE * n) < 4 * np.sqrt(n * SHARE * (1 - SHARE))

    run = over_time["runs"][i]
    metadata = run.materialized()["recovery_strategies"]
    assert metadata["experiment"].value == "test-exp"
    assert metadata["experiment_share"].value == SHARE
    assert metadata["experiment_arms"].value == {
        "champion": int((eligible & ~challenger).sum()),
        "challenger": int(challenger.sum()),
    }
    checks = {c.check_name: c for c in run.result.get_asset_check_evaluations()}
    assert checks["policy_is_as_expected"].passed
    assert checks["every_borrower_has_a_strategy"].passed


@pytest.mark.parametrize("i", [0, 1, 2], ids=SNAPSHOTS)
def test_the_export_carries_the_arms(over_time, i):
    table, export = over_time["tables"][i]["recovery_strategies"], over_time["exports"][i]
    assert list(export.columns[-3:]) == ["champion_strategy", "experiment", "experiment_arm"]
    assert export["Borrower_ID"].tolist() == table["Borrower_ID"].tolist()
    assert export["experiment_arm"].tolist() == table["experiment_arm"].fillna("").tolist()
    assert export["recovery_strategy"].tolist() == table["recovery_strategy"].tolist()


def test_a_borrowers_arm_never_changes_across_the_runs(over_time):
    arms = [t["recovery_strategies"].set_index("Borrower_ID") for t in over_time["tables"]]
    for before, after in zip(arms, arms[1:], strict=False):
        assert len(after.index.difference(before.index)) == NEW
        assert len(before.index.difference(after.index)) > 0
    # the books differ (some left, some came, arrears moved): where a borrower is in the
    # experiment in all three runs, it is in the same arm in each
    everywhere = arms[0].index.intersection(arms[1].index).intersection(arms[2].index)
    a, b, c = (t.loc[everywhere, "experiment_arm"] for t in arms)
    in_all = a.notna() & b.notna() & c.notna()
    assert in_all.sum() > 500
    assert (a[in_all] == b[in_all]).all() and (b[in_all] == c[in_all]).all()
    # and of those in it twice (a borrower's champion strategy can change with its score)
    for x, y in ((a, b), (b, c), (a, c)):
        twice = x.notna() & y.notna()
        assert (x[twice] == y[twice]).all()


def test_the_first_snapshot_has_no_uplift_and_says_so(over_time):
    assert over_time["tables"][0]["challenger_uplift"].empty
    metadata = over_time["runs"][0].materialized()["challenger_uplift"]
    assert metadata["compared"].value == NO_PREVIOUS


@COMPARISONS
def test_the_uplift_interval_covers_the_planted_effect(over_time, i):
    book_t, book_t1 = over_time["books"][i - 1], over_time["books"][i]
    table = over_time["tables"][i - 1]["recovery_strategies"]
    row = over_time["tables"][i]["challenger_uplift"].iloc[0]
    assert row["experiment"] == "test-exp" and row["challenger_strategy"] == CHALLENGER

    # the arms' counts, from the two CSVs and the earlier run's arms
    at_t = book_t.set_index("Borrower_ID").loc[table["Borrower_ID"]].reset_index()
    at_t["arm"] = table["experiment_arm"].to_numpy()
    at_t["strategy"] = table["recovery_strategy"].to_numpy()
    at_t["champion"] = table["champion_strategy"].to_numpy()
    after = book_t1.set_index("Borrower_ID")["Recovery_Status"]
    open_in = at_t[at_t["Recovery_Status"].isna() & at_t["arm"].notna()]
    resolved = open_in[open_in["Borrower_ID"].isin(after[after.notna()].index)]
    status = after.loc[resolved["Borrower_ID"]].to_numpy()
    expected_rate = {}
    for arm in ("champion", "challenger"):
        mine = (resolved["arm"] == arm).to_numpy()
        assert row[f"{arm}_borrowers"] == (open_in["arm"] == arm).sum()
        assert row[f"{arm}_resolved"] == mine.sum() > 40
        assert row[f"{arm}_fully_recovered"] == (status[mine] == "Fully Recovered").sum()
        # what the follow-up drew each resolving loan's outcome from: its strategy's effect
        # (legal action's too, in the champion arm)
        probs = outcome_probabilities(resolved[mine])
        effect = resolved["strategy"][mine].map(EFFECTS).fillna(0.0).to_numpy()
        expected_rate[arm] = shifted_probabilities(probs, effect)[:, 0].mean()
    # the uplift expected of these resolved borrowers (which loans resolve is drawn apart from
    # the strategies, so the arms' mixes of risk differ by chance)
    expected = expected_rate["challenger"] - expected_rate["champion"]
    assert row["uplift_ci_low"] <= expected <= row["uplift_ci_high"]
    # and the planted effect itself, of the whole experiment (the arms are random): each
    # borrower's P(Fully Recovered) under settlement minus under its champion's strategy. Legal
    # action has the same planted effect as settlement, so only the reminders' borrowers gain:
    # the planted uplift is EFFECT times their share of the experiment, less where it clips at 1
    probs = outcome_probabilities(open_in)
    champion_effect = open_in["champion"].map(EFFECTS).fillna(0.0).to_numpy()
    planted = (
        shifted_probabilities(probs, np.full(len(probs), EFFECT))
        - shifted_probabilities(probs, champion_effect)
    )[:, 0].mean()
    reminders_share = (open_in["champion"] == STRATEGY_REMINDERS).mean()
    assert 0.9 * EFFECT * reminders_share < planted <= EFFECT * reminders_share
    assert row["uplift_ci_low"] <= planted <= row["uplift_ci_high"]
    assert row["uplift"] == pytest.approx(row["challenger_rate"] - row["champion_rate"])

    # the sample size: the formula for the uplift observed, less what each arm has
    needed = ex.sample_size_per_arm(
        row["champion_rate"] + row["uplift"],
        row["champion_rate"],
        significance=0.05,
        power=0.80,
    )
    assert row["needed_per_arm"] == needed
    assert row["still_needed_champion"] == max(0, needed - row["champion_resolved"])
    assert row["still_needed_challenger"] == max(0, needed - row["challenger_resolved"])
    metadata = over_time["runs"][i].materialized()["challenger_uplift"]
    assert metadata["experiments"].value == 1
    assert metadata["previous_snapshot"].value.startswith(f"{SNAPSHOTS[i - 1]}@")
