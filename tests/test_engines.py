"""The engine seam: every engine implements every method of the interface (engines/base.py)
that has no default."""

import inspect

import pytest

from rssd_kernel.engines.base import Engine
from rssd_kernel.engines.duckdb import DuckDBEngine
from rssd_kernel.engines.postgres import PostgresEngine

REQUIRED = [
    name
    for name, member in vars(Engine).items()
    if inspect.isfunction(member) and "raise NotImplementedError" in inspect.getsource(member)
]


def test_the_interface_names_what_every_engine_must_do():
    assert {"start", "split", "classify", "run_statement", "begin_stateful", "interrupt"} <= set(
        REQUIRED
    )


@pytest.mark.parametrize("engine", [DuckDBEngine, PostgresEngine])
def test_every_engine_implements_the_interface(engine):
    missing = [name for name in REQUIRED if getattr(engine, name) is getattr(Engine, name)]
    assert missing == []
