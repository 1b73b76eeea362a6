"""The chaos test's client zygote: imports vipernet once, then forks one client per request.

Starting a Python interpreter per client costs ~150 ms of CPU; the chaos test starts
hundreds.  The zygote reads one JSON request per line on stdin, forks, prints
``{"id", "pid"}`` for it, and the child (which opens its own netd channel: the netd client
makes a new one after fork) runs its role and prints one JSON result line.  Each line is a
single ``os.write`` of far less than PIPE_BUF, so lines from concurrent children never mix.

Roles (every one moves ``bytes`` through the echo server; chunks carry their index, so
reordering shows in the hash as well as corruption and loss):

* ``half``: a sender thread writes everything then ``shutdown(SHUT_WR)``; the main thread
  reads to EOF (the echo server's FIN after ours).
* ``exact``: as ``half`` but without the shutdown: read exactly ``bytes``, then ``close()``.
* ``abort``: send until ``abort_after`` bytes, then ``close()`` with the echo unread (a RST).
* ``exit``: send until ``abort_after`` bytes, then ``os._exit`` mid-transfer (a crash
  without SIGKILL: netd sees the channel close with requests in flight).
* ``slow``: as ``half``, but reads 64 KiB at a time with a pause after each: our window
  closes, the echo server's writes block, it stops reading, and the kernel's window closes
  under the data we keep sending -- the shape of issue 16's stall.
* ``victim``: as ``half``, until the test has the zygote SIGKILL it.

Other requests: ``{"op": "kill", "id"}`` and ``{"op": "killall"}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any

from vipernet import socket as vsocket

CHUNK_MAX = 256 * 1024
SLOW_READ = 64 * 1024
SLOW_PAUSE = 0.003  # ~20 MB/s: slower than netd and the kernel can move it


def _chunks(seed: int, total: int) -> Any:
    rng = random.Random(seed)
    block = rng.randbytes(CHUNK_MAX)
    index = 0
    left = total
    while left:
        n = min(left, rng.randint(1, CHUNK_MAX))
        head = index.to_bytes(8, "big")
        yield (head + block[8:n])[:n]
        index += 1
        left -= n


def _say(result: dict[str, Any]) -> None:
    os.write(1, (json.dumps(result) + "\n").encode())


def _run(request: dict[str, Any]) -> dict[str, Any]:
    role = request["role"]
    total = int(request["bytes"])
    stop_after = int(request.get("abort_after", total))
    sock = vsocket.create_connection(("10.0.2.2", int(request["port"])), timeout=None)
    sent = hashlib.sha256()
    failure: list[BaseException] = []

    def sender() -> None:
        try:
            done = 0
            for chunk in _chunks(int(request["seed"]), total):
                if role in ("abort", "exit") and done >= stop_after:
                    break
                sock.sendall(chunk)
                sent.update(chunk)
                done += len(chunk)
            if role in ("half", "slow", "victim"):
                sock.shutdown(vsocket.SHUT_WR)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    if role in ("abort", "exit"):
        thread.join()
        if role == "exit":
            os._exit(0)
        sock.close()
        return {"ok": True}
    got = hashlib.sha256()
    n = 0
    while role != "exact" or n < total:
        if role == "slow":
            data = sock.recv(SLOW_READ)
            time.sleep(SLOW_PAUSE)
        else:
            data = sock.recv(min(CHUNK_MAX, total - n) if role == "exact" else CHUNK_MAX)
        if not data:
            break
        got.update(data)
        n += len(data)
    thread.join()
    sock.close()
    if failure:
        return {"ok": False, "error": repr(failure[0]), "n": n}
    ok = n == total and sent.digest() == got.digest()
    return {"ok": ok, "n": n, "sent": sent.hexdigest()[:16], "got": got.hexdigest()[:16]}


def _reap(live: set[int]) -> None:
    """Collect children that ended; only a child not yet reaped may be signalled (its pid
    cannot have been reused), so the zygote, not the test, does the killing."""
    while live:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            live.clear()
            return
        if pid == 0:
            return
        live.discard(pid)


def _kill(pid: int, live: set[int]) -> None:
    if pid in live:
        os.kill(pid, signal.SIGKILL)


def main() -> None:
    live: set[int] = set()
    children: dict[int, int] = {}  # request id -> pid
    for line in sys.stdin:
        request = json.loads(line)
        _reap(live)
        op = request.get("op", "spawn")
        if op == "kill":
            _kill(children.get(request["id"], -1), live)
            continue
        if op == "killall":
            for pid in list(live):
                _kill(pid, live)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                result = _run(request)
            except BaseException as exc:
                result = {"ok": False, "error": repr(exc)}
            _say({"id": request["id"], **result})
            os._exit(0)
        live.add(pid)
        children[request["id"]] = pid
        _say({"id": request["id"], "pid": pid})
    _reap(live)
    for pid in list(live):  # the test went away: take the clients with us
        _kill(pid, live)


if __name__ == "__main__":
    main()
