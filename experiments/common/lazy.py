"""Modules loaded at their first use.

A binary names its heavy modules (Keras, TensorFlow, the kerasseq library,
the train loop) with `lazy_import`, so that importing the binary defines
its flags without loading TensorFlow (about 6 s): `--help` answers at
once, and a usage error is reported before anything heavy loads.
"""

import importlib
import types


class _LazyModule(types.ModuleType):
    def __getattr__(self, name):
        return getattr(importlib.import_module(self.__name__), name)


def lazy_import(name):
    """The module `name`, imported when one of its attributes is first
    read (`keras = lazy_import("keras")`; `keras.layers` imports it)."""
    return _LazyModule(name)
