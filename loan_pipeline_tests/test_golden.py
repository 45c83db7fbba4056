"""Outputs are what they were: every table, chart, the export, the model card and the profile
of a run on the shipped sample and on the reference data set, against the committed digests
(``loan_pipeline_tests/golden``; regenerated on purpose by ``python -m loan_pipeline_tests.golden``
in a change that means to alter outputs)."""

from __future__ import annotations

import json

import pytest

from loan_pipeline_tests.golden import digests, golden_path


@pytest.mark.parametrize("book", ["sample", "reference"])
def test_outputs_are_byte_identical_to_the_golden_digests(book, request):
    run = request.getfixturevalue("sample_run" if book == "sample" else "reference_run")
    expected = json.loads(golden_path(book).read_text())
    found = digests(run.storage)
    changed = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    assert not changed and found.keys() == expected.keys(), (
        f"outputs changed on the {book} book: {changed}; missing {sorted(expected.keys() - found.keys())}; "
        f"new {sorted(found.keys() - expected.keys())}. If the change means to alter them, "
        "regenerate: python -m loan_pipeline_tests.golden"
    )
