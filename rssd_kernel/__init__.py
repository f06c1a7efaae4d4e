"""rssd-kernel: a Jupyter kernel for stateful SQL notebooks on DuckDB.

Every execution is recorded in a Resource Surveillance State Database (RSSD) kept in the
same DuckDB file as the user's data.
"""

__version__ = "0.3.0"
KERNEL_NAME = "rssd"
