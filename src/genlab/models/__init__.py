"""Model families. Each module registers its models with :mod:`genlab.registry`.

This package is callable: ``genlab.models()`` returns the registry (name -> entry, as :func:`genlab.api.models`) while
``genlab.models.rbm`` stays the RBM's module. A function named ``models`` at the package top would not do: the
import system replaces that attribute with this package as soon as any model module is imported.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self) -> dict:
        from genlab import registry

        return {entry.name: entry for entry in registry.entries()}


sys.modules[__name__].__class__ = _CallablePackage
