"""jupyter_kernel_test's protocol conformance checks for the rssd kernel."""

import jupyter_kernel_test


class RssdKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "rssd"
    language_name = "sql"
    file_extension = ".sql"
    code_execute_result = [
        {"code": "SELECT 42 AS answer", "result": "answer\nINTEGER\n-------\n42\n1 row"},
    ]
    code_generate_error = "SELECT * FROM no_such_table"
    code_display_data = [
        {"code": "%help", "mime": "text/html"},
    ]
    completion_samples = [
        {"text": "%hel", "matches": {"%help"}},
        {"text": "SELECT * FROM duckdb_setti", "matches": {"duckdb_settings"}},
    ]
    code_inspect_sample = "upper"
    complete_code_samples = ["SELECT 1", "SELECT 1;", "%help", ""]
    incomplete_code_samples = ["SELECT (1", "SELECT 'abc", "CREATE TABLE t (a INTEGER"]
    invalid_code_samples = ["SELECT ) FROM"]

    @classmethod
    def setUpClass(cls):
        import os
        import tempfile

        cls._folder = tempfile.TemporaryDirectory()
        cls._saved = os.environ.get("RSSD_DATABASE")
        os.environ["RSSD_DATABASE"] = os.path.join(cls._folder.name, "conformance.duckdb")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        import os

        super().tearDownClass()
        os.environ.pop("RSSD_DATABASE", None)
        if cls._saved is not None:
            os.environ["RSSD_DATABASE"] = cls._saved
        cls._folder.cleanup()


class RssdPostgresKernelTests(RssdKernelTests):
    """The same checks with the kernel on PostgreSQL (a server of this class's own)."""

    code_execute_result = [
        {"code": "SELECT 42 AS answer", "result": "answer\ninteger\n-------\n42\n1 row"},
    ]
    completion_samples = [
        {"text": "%hel", "matches": {"%help"}},
        {"text": "SELECT * FROM pg_settings_get", "matches": {"pg_settings_get_flags"}},
    ]

    @classmethod
    def setUpClass(cls):
        import os
        import tempfile

        from pg_server import PgServer

        cls._server = PgServer()
        cls._folder = tempfile.TemporaryDirectory()
        cls._saved = os.environ.get("RSSD_DATABASE")
        cls._saved_state = os.environ.get("XDG_STATE_HOME")
        os.environ["RSSD_DATABASE"] = cls._server.create_database()
        os.environ["XDG_STATE_HOME"] = cls._folder.name
        jupyter_kernel_test.KernelTests.setUpClass.__func__(cls)

    @classmethod
    def tearDownClass(cls):
        import os

        super().tearDownClass()
        os.environ.pop("XDG_STATE_HOME", None)
        if cls._saved_state is not None:
            os.environ["XDG_STATE_HOME"] = cls._saved_state
        cls._server.close()
