"""Submodules loaded on first use (PEP 562), for a package whose
submodules are heavy to import (TensorFlow pipelines, checkpoint readers)
and not always needed."""

import importlib
import sys


def lazy_submodules(package, names):
    """The module-level `__getattr__` and `__dir__` that make `names`,
    submodules of `package`, attributes loaded on first use.

    Example, in a package's `__init__.py`:

        __getattr__, __dir__ = lazy_submodules(__name__, ("glue", "lra"))

    Args:
        package: the package's name (its `__name__`).
        names: the submodules loaded on first use.

    Returns:
        `(__getattr__, __dir__)`: `__getattr__(name)` imports
        `package.name` for a name of `names` and raises `AttributeError`
        for any other; `__dir__()` lists the package's globals and `names`.
    """

    def __getattr__(name):
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(list(vars(sys.modules[package])) + list(names))

    return __getattr__, __dir__
