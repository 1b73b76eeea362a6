"""Loaded by Python at start-up when ``vipernet run`` put this directory on PYTHONPATH."""

import os
import sys


def _chain_next_sitecustomize() -> None:
    # We shadow any other sitecustomize (Debian ships one): run the next one on the path.
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as handle:
                code = compile(handle.read(), candidate, "exec")
            exec(code, {"__name__": "sitecustomize", "__file__": candidate})
            return


if os.environ.get("VIPERNET_RUN") == "1":
    from vipernet.runhook.patch import install

    install()
_chain_next_sitecustomize()
