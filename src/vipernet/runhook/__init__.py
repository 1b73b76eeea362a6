"""vipernet.runhook: route an unmodified Python program's stdlib sockets through netd.

``vipernet run -- python app.py`` puts :data:`SHIM_DIR` first on ``PYTHONPATH``; the
``sitecustomize`` there calls :func:`vipernet.runhook.patch.install` before the program's
first line, which swaps ``socket.socket`` (AF_INET stream and datagram sockets only),
``socket.create_connection``, ``socket.getaddrinfo``, ``socket.gethostbyname(_ex)`` for
the :mod:`vipernet.socket` equivalents.  See docs/usermode.md for what is covered.
"""

from pathlib import Path

SHIM_DIR = str(Path(__file__).resolve().parent / "shim")
ENV_FLAG = "VIPERNET_RUN"  # set to "1" by `vipernet run`; the shim does nothing without it

__all__ = ["ENV_FLAG", "SHIM_DIR"]
