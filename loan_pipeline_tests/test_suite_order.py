"""The order `make test` hands the files out in (conftest.py): it names files that exist, and
every file that starts a test server is in the one unit that starts each server once."""

from __future__ import annotations

import re
from pathlib import Path

from loan_pipeline_tests.conftest import LONGEST_FIRST, ON_THE_TEST_SERVERS

TESTS = Path(__file__).parent
SERVER_FIXTURES = re.compile(r"\b(dask_cluster|postgres_server|loopback_cluster)\b")


def test_every_listed_file_exists_once():
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    missing = [name for name in LONGEST_FIRST if not (TESTS / name).is_file()]
    assert not missing, f"renamed or removed: update LONGEST_FIRST in conftest.py: {missing}"


def test_the_files_that_start_a_test_server_are_one_unit():
    starting = {
        path.relative_to(TESTS).as_posix()
        for path in TESTS.rglob("test_*.py")
        if path.name != Path(__file__).name and SERVER_FIXTURES.search(path.read_text())
    }
    assert starting == set(ON_THE_TEST_SERVERS)
