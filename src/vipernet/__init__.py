"""vipernet: the ViperDOS networking stack in Python.

Layers, bottom to top (arrows point down only):
``wire`` -> ``link`` -> ``stack`` -> ``runtime`` -> ``netd`` / ``netclient`` ->
``dns``, ``tls``, ``http``, ``ssh`` -> ``cli``.  See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
