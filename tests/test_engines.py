"""The engine seam: every engine implements every abstract method of the interface
(engines/base.py)."""

import pytest

from rssd_kernel.engines.base import Engine
from rssd_kernel.engines.duckdb import DuckDBEngine
from rssd_kernel.engines.postgres import PostgresEngine


def test_the_interface_names_what_every_engine_must_do():
    required = Engine.__abstractmethods__
    assert {
        "start",
        "split",
        "classify",
        "run_statement",
        "begin_stateful",
        "interrupt",
    } <= required


@pytest.mark.parametrize("engine", [DuckDBEngine, PostgresEngine])
def test_every_engine_implements_the_interface(engine):
    assert sorted(engine.__abstractmethods__) == []
