"""papermill support: parameters become `SET VARIABLE name = <literal>;` in rssd notebooks.

papermill finds parameter translators by kernel name but has no entry-point group for them.
It does load `papermill.engine` entry points at start-up, so this module, named there, registers
the translator on import. The engine itself is papermill's own nbclient engine.
"""

from papermill.engines import NBClientEngine
from papermill.translators import Translator, papermill_translators

from rssd_kernel import KERNEL_NAME
from rssd_kernel.parameters import DIRECTIVE, check_name, literal


class RssdTranslator(Translator):
    @classmethod
    def translate(cls, val):
        return literal(val)

    @classmethod
    def comment(cls, cmt_str):
        return f"-- {cmt_str}"

    @classmethod
    def assign(cls, name, str_val):
        return f"SET VARIABLE {check_name(name)} = {str_val};"

    @classmethod
    def codify(cls, parameters, comment="Parameters"):
        return f"{DIRECTIVE}\n" + super().codify(parameters, comment)


class RssdEngine(NBClientEngine):
    """papermill's nbclient engine, available as `--engine rssd`; loading it registers the
    translator for every papermill run."""


papermill_translators.register(KERNEL_NAME, RssdTranslator)
