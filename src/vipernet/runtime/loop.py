"""The loop that drives one :class:`~vipernet.stack.Stack` with one device in real time.

One iteration (:meth:`Runtime.run_once`): wait on a selector (the device's fd, a wake-up
fd, and any fd a caller registered) until the earliest of the stack's, the device's, the
hooks' and the timers' deadlines; then, under the runtime lock, feed every received frame
to the stack, run due timers and ``stack.poll(now)``, run the hooks, and send everything
``stack.transmit()`` produced.  The path from a frame arriving to its answer leaving is
select -> ``device.receive`` -> ``stack.receive`` -> ``stack.transmit`` -> ``device.send``
with nothing else on it: that is what the ping RTT benchmark measures.

Extending the loop (what netd uses):

* ``runtime.selector`` is a plain :mod:`selectors` selector; register a file object with
  ``data=callback`` and the loop calls ``callback(mask)`` when it is ready (or use
  :meth:`Runtime.register`).
* :meth:`Runtime.add_hook` adds ``hook(now) -> float | None``, run after every iteration
  (e.g. drain ``stack.take_changed()``); its return value is the hook's next deadline.
* :meth:`Runtime.call_later` schedules a one-shot timer.

Threads (kernel mode: the stack inside the program's own process):
:meth:`Runtime.start_thread` runs the loop in a daemon thread.  Other threads reach the
stack through :meth:`Runtime.call`: it runs ``fn`` *under the runtime lock* — serialised
with the loop exactly as if it ran on the loop thread, but without two thread switches on
every socket call — then sends what ``fn`` queued and pokes the loop through its wake-up
fd if ``fn`` moved the next deadline earlier.  :meth:`Runtime.wait_until` blocks a client
thread until a predicate over stack state holds (checked after every iteration).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vipernet.link.frame import Device
from vipernet.stack.stack import Stack

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Hook = Callable[[float], float | None]
FdCallback = Callable[[int], None]

_LOCAL_ROUNDS = 4
_DEVICE = object()  # selector data markers for our own fds
_WAKE = object()


@dataclass(order=True, slots=True)
class TimerHandle:
    """A scheduled callback; :meth:`cancel` prevents it from running."""

    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Runtime:
    """See the module docstring."""

    def __init__(self, stack: Stack, device: Device, *, clock: Clock = time.monotonic) -> None:
        self.stack = stack
        self.device = device
        self.clock = clock
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._hooks: list[Hook] = []
        self._hook_deadlines: dict[int, float | None] = {}
        self._timers: list[TimerHandle] = []
        self._timer_seq = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wait_until: float = math.inf  # when the sleeping loop will next wake by itself
        self.iterations = 0
        self.error: BaseException | None = None
        self._device_fd = device.fileno()
        if self._device_fd is not None:
            self.selector.register(self._device_fd, selectors.EVENT_READ, _DEVICE)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._closed = False

    # -- extension points ----------------------------------------------------------------------

    def register(self, fileobj: Any, callback: FdCallback,
                 events: int = selectors.EVENT_READ) -> None:
        """Call ``callback(mask)`` from the loop whenever ``fileobj`` is ready."""
        with self.lock:
            self.selector.register(fileobj, events, callback)
        self.wake()

    def unregister(self, fileobj: Any) -> None:
        with self.lock:
            self.selector.unregister(fileobj)

    def add_hook(self, hook: Hook) -> None:
        """Run ``hook(now)`` after every iteration; it returns its next deadline or None."""
        with self.lock:
            self._hooks.append(hook)
        self.wake()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        with self.lock:
            handle = TimerHandle(self.clock() + delay, next(self._timer_seq), callback)
            heapq.heappush(self._timers, handle)
            moved = handle.when < self._wait_until
        if moved:
            self.wake()
        return handle

    # -- the loop ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest moment the loop must act without any fd becoming ready."""
        candidates = [self.stack.next_deadline(), self.device.next_deadline()]
        candidates.extend(self._hook_deadlines.values())
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            candidates.append(self._timers[0].when)
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def run_once(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` seconds, None = until something is due) and process."""
        with self.lock:
            deadline = self.next_deadline()
            now = self.clock()
            wait = timeout
            if deadline is not None:
                until = max(0.0, deadline - now)
                wait = until if wait is None else min(wait, until)
            if self._device_fd is None and not self._stopping:
                # A device without an fd (memory link) is polled: never sleep long on it.
                wait = 0.001 if wait is None else min(wait, 0.001)
            self._wait_until = math.inf if wait is None else now + wait
        events = self.selector.select(wait)
        with self.lock:
            self._wait_until = -math.inf  # awake: nobody needs to poke us
            self._process(events)
            self._cond.notify_all()

    def _process(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        stack = self.stack
        device = self.device
        now = self.clock()
        self.iterations += 1
        device_ready = self._device_fd is None
        for key, mask in events:
            data = key.data
            if data is _DEVICE:
                device_ready = True
            elif data is _WAKE:
                self._drain_wake()
            else:
                try:
                    data(mask)
                except Exception:
                    log.exception("fd callback failed")
        dev_deadline = device.next_deadline()
        if device_ready or (dev_deadline is not None and dev_deadline <= now):
            for frame in device.receive(now):
                stack.receive(frame, now)
        self._run_timers(now)
        stack_deadline = stack.next_deadline()
        if stack_deadline is not None and stack_deadline <= now:
            stack.poll(now)
        # Packets to our own address (sent by fd callbacks, timers, hooks) are delivered
        # before the hooks look at readiness, and again after hooks that sent more; a
        # ping-pong with ourselves is cut after a few rounds (next_deadline() is then 0).
        for _ in range(_LOCAL_ROUNDS):
            stack.deliver_local(now)
            self._run_hooks(now)
            if not stack.has_local:
                break
        self._flush(now)

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and (timers[0].cancelled or timers[0].when <= now):
            handle = heapq.heappop(timers)
            if handle.cancelled:
                continue
            try:
                handle.callback()
            except Exception:
                log.exception("timer callback failed")

    def _run_hooks(self, now: float) -> None:
        for hook in self._hooks:
            try:
                self._hook_deadlines[id(hook)] = hook(now)
            except Exception:
                log.exception("runtime hook failed")
                self._hook_deadlines[id(hook)] = None

    def _flush(self, now: float) -> None:
        send = self.device.send
        for frame in self.stack.transmit():
            send(frame, now)

    def run_forever(self) -> None:
        """Loop until :meth:`stop` is called.

        If the device fails (closed under us, unplugged TAP) the error is logged, kept in
        :attr:`error` and re-raised; threads blocked in :meth:`wait_until` are woken.
        """
        try:
            while not self._stopping:
                self.run_once(None)
        except BaseException as exc:
            self.error = exc
            log.exception("runtime loop stopped by an error")
            with self._cond:
                self._cond.notify_all()
            raise

    def stop(self) -> None:
        """Ask the loop to return (from any thread); joins the loop thread if there is one."""
        self._stopping = True
        self.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._thread = None

    def close(self) -> None:
        """Stop and release the selector and the wake-up pipe (not the device)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        self.selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- threads -------------------------------------------------------------------------------

    def start_thread(self, name: str = "vipernet-runtime") -> threading.Thread:
        """Run the loop in a daemon thread (kernel mode)."""
        if self._thread is not None:
            return self._thread
        self._stopping = False
        thread = threading.Thread(target=self._thread_main, name=name, daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def _thread_main(self) -> None:
        # run_forever logged and kept the error in self.error; nothing else to tell here.
        with contextlib.suppress(BaseException):
            self.run_forever()

    def wake(self) -> None:
        """Make a sleeping loop iterate now (thread-safe, cheap, never blocks)."""
        # A full pipe means a wake-up is already pending; a closed one, that we are done.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 4096):
                pass

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` serialised with the loop and return its result (or raise its error).

        Frames ``fn`` queued are sent before returning; the loop is poked only if ``fn``
        made something due earlier than the loop planned to wake.
        """
        with self.lock:
            try:
                result = fn()
            finally:
                self._flush(self.clock())
                deadline = self.next_deadline()
                if deadline is not None and deadline < self._wait_until:
                    self.wake()
                # fn may have made another thread's socket ready without any frame moving
                # (a datagram to ourselves): let every waiter re-check its predicate.
                self._cond.notify_all()
        return result

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block the calling thread until ``predicate()`` (run under the lock) is true.

        Returns False on timeout.  Must not be called from the loop thread.
        """
        with self._cond:
            return self._cond.wait_for(lambda: predicate() or self.error is not None, timeout
                                       ) and self.error is None

    @property
    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()
