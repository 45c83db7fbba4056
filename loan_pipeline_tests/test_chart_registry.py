"""The chart registry (``core.chart_registry``) is the one place a chart is declared: the chart
assets, their inputs and the columns they load, and the drawing are all made from it."""

from __future__ import annotations

import json

import pytest
from dagster import AssetKey

from loan_pipeline.assets.charts import chart_assets as chart_steps
from loan_pipeline.core import chart_registry
from loan_pipeline.definitions import defs


def test_every_registered_chart_is_an_asset_and_every_chart_asset_is_registered():
    graph = defs.get_repository_def().asset_graph
    chart_assets = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).group_name == "charts"
    }
    assert chart_assets == set(chart_registry.KEYS)
    drawn = [spec.key.to_user_string() for step in chart_steps for spec in step.specs]
    assert drawn == chart_registry.KEYS
    assert [step.op.name for step in chart_steps] == chart_registry.STEPS
    for chart in chart_registry.CHARTS:
        node = graph.get(AssetKey(chart.key))
        assert node.description == chart.description
        assert {k.to_user_string() for k in node.parent_keys} == set(chart.inputs)


def test_each_step_loads_what_the_registry_says_its_charts_read():
    for step in chart_steps:
        keys = chart_registry.keys_of(step.op.name)
        assert set(step.op.ins) == set(chart_registry.inputs_read(keys))
        tags = step.op.tags
        for table, columns in chart_registry.columns_read(keys).items():
            assert json.loads(tags[f"loan_pipeline/columns.{table}"]) == columns
            assert tags[f"loan_pipeline/partitioned.{table}"] == "true"
    # the loan book's charts never load what only a run comparing two snapshots makes
    book = chart_steps[0]
    assert not {"roll_rates", "strategy_backtest"} & set(book.op.ins)


def test_every_entry_names_a_draw_function_and_summaries_that_exist():
    from loan_pipeline.core import chart_summaries, charts

    for chart in chart_registry.CHARTS:
        assert callable(getattr(charts, chart.draw, None)), chart.key
        assert set(chart.summaries) <= set(chart_summaries.SUMMARIES), chart.key
        assert set(chart.columns) <= set(chart.inputs), chart.key
        if chart.summaries or chart.sample:
            assert "validated_loans" in chart.inputs, chart.key
    used = {name for chart in chart_registry.CHARTS for name in chart.summaries}
    assert used == set(chart_summaries.SUMMARIES), "a summary no chart asks for"
    draws = {chart.draw for chart in chart_registry.CHARTS}
    assert len(draws) == len(chart_registry.CHARTS)
    assert draws == {name for name in dir(charts) if name.startswith("draw_")}


def test_the_jobs_and_the_published_charts_follow_the_registry():
    charts_only = defs.resolve_job_def("charts_only")
    keys = {k.to_user_string() for k in charts_only.asset_layer.executable_asset_keys}
    assert set(chart_registry.KEYS) <= keys
    full = defs.resolve_job_def("full_refresh")
    keys = {k.to_user_string() for k in full.asset_layer.executable_asset_keys}
    assert set(chart_registry.KEYS) <= keys


def test_an_unknown_chart_is_named():
    with pytest.raises(KeyError, match="not a registered chart"):
        chart_registry.chart("chart_nothing")
