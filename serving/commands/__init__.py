"""Subcommands of ``soz``: one module each, registered with :func:`serving.cli.command`.

Import order here is the order ``soz --help`` lists them in.
"""

import importlib
import pkgutil

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_mod}")
