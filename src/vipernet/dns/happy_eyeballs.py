"""A sans-IO Happy Eyeballs Version 2 (RFC 8305) connection race.

:class:`HappyEyeballs` never touches a socket or a clock: the caller reports DNS answers
and connection outcomes, passing ``now`` (seconds, any monotonic origin) into every call,
and asks :meth:`HappyEyeballs.next_action` what to do until it gets a :class:`Wait`,
:class:`Connected` or :class:`Failed`.  The algorithm:

* Section 3: both lookups run at once.  An answer of the preferred family (IPv6 unless
  ``prefer_ipv6=False``) lets attempts start at once; an answer of the other family while
  the preferred one is outstanding waits up to the Resolution Delay (50 ms) for it.
* Section 4: untried addresses are interleaved, ``first_family_count`` of the preferred
  family first, then alternating families.  Late answers join the untried addresses and
  keep the alternation; duplicates are dropped.
* Section 5: one attempt starts every Connection Attempt Delay (250 ms, clamped to
  [100 ms, 2 s]), or at once when nothing is in flight.  The first success cancels every
  other attempt and nothing new starts.

Loop: ``while not isinstance(a := he.next_action(now), (Wait, Connected, Failed))``: act on
each :class:`StartAttempt` / :class:`CancelAttempt`; then sleep until ``Wait.until`` or the
next event.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass

from vipernet.stack.socket_api import AF_INET, AF_INET6

# RFC 8305 section 8 recommendations.
DEFAULT_RESOLUTION_DELAY = 0.05
DEFAULT_ATTEMPT_DELAY = 0.25
MIN_ATTEMPT_DELAY = 0.1
MAX_ATTEMPT_DELAY = 2.0

_FAMILIES = (AF_INET6, AF_INET)


@dataclass(frozen=True)
class StartAttempt:
    """Begin connecting to ``address``; report the outcome under ``attempt_id``."""

    attempt_id: int
    family: int
    address: str


@dataclass(frozen=True)
class CancelAttempt:
    """Abort (close) the in-flight attempt ``attempt_id``: another one won."""

    attempt_id: int


@dataclass(frozen=True)
class Wait:
    """Nothing to do until ``until`` (a ``now`` value) or the next reported event.

    ``until`` is None when only an event (an answer or an attempt outcome) can make
    progress.
    """

    until: float | None


@dataclass(frozen=True)
class Connected:
    """The race is won: keep attempt ``attempt_id``'s connection."""

    attempt_id: int
    family: int
    address: str


@dataclass(frozen=True)
class Failed:
    """Every address failed (or there were none) and both lookups are done."""

    error: OSError


Action = StartAttempt | CancelAttempt | Wait | Connected | Failed


def _check_family(family: int) -> None:
    if family not in _FAMILIES:
        raise ValueError(f"family must be AF_INET or AF_INET6, not {family!r}")


def _canonical(family: int, address: str) -> str:
    """The form used to spot duplicates ("2001:DB8::1" equals "2001:db8:0::1")."""
    ip = ipaddress.ip_address(address)
    if (ip.version == 6) != (family == AF_INET6):
        raise ValueError(f"{address!r} is not an address of family {family}")
    return ip.compressed


class HappyEyeballs:
    """One connection race to one host's addresses (see the module docstring)."""

    def __init__(
        self,
        now: float,
        *,
        resolution_delay: float = DEFAULT_RESOLUTION_DELAY,
        attempt_delay: float = DEFAULT_ATTEMPT_DELAY,
        first_family_count: int = 1,
        prefer_ipv6: bool = True,
    ) -> None:
        if resolution_delay < 0:
            raise ValueError("resolution_delay must not be negative")
        if first_family_count < 1:
            raise ValueError("first_family_count must be at least 1")
        self.started_at = now
        self._resolution_delay = resolution_delay
        # Section 5: a lower bound keeps a tiny delay from flooding the network with
        # parallel SYNs, an upper bound keeps a broken path from stalling the user.
        self._attempt_delay = min(max(attempt_delay, MIN_ATTEMPT_DELAY), MAX_ATTEMPT_DELAY)
        self._first_family_count = first_family_count
        self._preferred = AF_INET6 if prefer_ipv6 else AF_INET
        self._other = AF_INET if prefer_ipv6 else AF_INET6

        self._pending_lookups: set[int] = set(_FAMILIES)
        self._lookup_error: OSError | None = None
        # Set when the other family answers while the preferred lookup is outstanding.
        self._resolution_deadline: float | None = None

        self._untried: dict[int, list[str]] = {AF_INET6: [], AF_INET: []}
        self._seen: set[tuple[int, str]] = set()

        self._next_id = 1
        self._in_flight: dict[int, tuple[int, str]] = {}
        self._started_families: list[int] = []
        self._last_start: float | None = None
        self._last_error: OSError | None = None

        self._cancels: list[int] = []
        self._outcome: Connected | Failed | None = None

    @property
    def resolution_delay(self) -> float:
        return self._resolution_delay

    @property
    def attempt_delay(self) -> float:
        """The Connection Attempt Delay in use, after clamping."""
        return self._attempt_delay

    # -- inputs -------------------------------------------------------------------------

    def addresses_resolved(self, family: int, addresses: list[str], now: float) -> None:
        """The lookup for ``family`` answered (an empty list is a negative answer)."""
        _check_family(family)
        self._pending_lookups.discard(family)
        if self._outcome is not None:
            return  # Section 5: addresses arriving after the race ends are ignored.
        added = False
        for address in addresses:
            key = (family, _canonical(family, address))
            if key in self._seen:
                continue
            self._seen.add(key)
            self._untried[family].append(address)
            added = True
        if (
            added
            and family != self._preferred
            and self._preferred in self._pending_lookups
            and self._resolution_deadline is None
        ):
            # Section 3: give the preferred family a short head start before settling.
            self._resolution_deadline = now + self._resolution_delay

    def resolution_failed(self, family: int, error: OSError, now: float) -> None:
        """The lookup for ``family`` failed; the race goes on with the other family."""
        _check_family(family)
        self._pending_lookups.discard(family)
        self._lookup_error = error

    def attempt_succeeded(self, attempt_id: int, now: float) -> None:
        """Attempt ``attempt_id`` connected.  Late reports of cancelled attempts are ignored."""
        target = self._take_in_flight(attempt_id)
        if target is None or self._outcome is not None:
            return
        family, address = target
        # Section 5: every other attempt still running is cancelled, untried ones dropped.
        self._cancels = sorted(self._in_flight)
        self._in_flight.clear()
        for family_list in self._untried.values():
            family_list.clear()
        self._outcome = Connected(attempt_id, family, address)

    def attempt_failed(self, attempt_id: int, error: OSError, now: float) -> None:
        """Attempt ``attempt_id`` failed with ``error``."""
        if self._take_in_flight(attempt_id) is None or self._outcome is not None:
            return
        self._last_error = error

    # -- output -------------------------------------------------------------------------

    def next_action(self, now: float) -> Action:
        """What the caller should do now; call again until Wait, Connected or Failed."""
        if self._cancels:
            return CancelAttempt(self._cancels.pop(0))
        if self._outcome is not None:
            return self._outcome

        has_untried = any(self._untried.values())
        if has_untried and self._may_start(now):
            due = self._next_start_time()
            if due is None or now >= due:
                return self._start(now)
            return Wait(due)

        if not has_untried and not self._in_flight and not self._pending_lookups:
            self._outcome = Failed(self._final_error())
            return self._outcome

        if has_untried:
            # Only the Resolution Delay can hold untried addresses back here.
            return Wait(self._resolution_deadline)
        return Wait(None)

    # -- internals ----------------------------------------------------------------------

    def _take_in_flight(self, attempt_id: int) -> tuple[int, str] | None:
        if not 0 < attempt_id < self._next_id:
            raise ValueError(f"no attempt {attempt_id} was started")
        return self._in_flight.pop(attempt_id, None)

    def _may_start(self, now: float) -> bool:
        """Section 3's gate: has the preferred family answered, or been waited for enough?"""
        if self._started_families or self._preferred not in self._pending_lookups:
            return True
        return self._resolution_deadline is not None and now >= self._resolution_deadline

    def _next_start_time(self) -> float | None:
        """When the next attempt is due; None means at once (nothing is in flight)."""
        if not self._in_flight or self._last_start is None:
            # Waiting out the delay after a failure only wastes time (section 5).
            return None
        return self._last_start + self._attempt_delay

    def _next_family(self) -> int:
        """Section 4's interleaving, decided one attempt at a time.

        Picking the family per attempt (rather than fixing a list up front) lets late
        answers slot into the alternation without re-sorting what was already tried.
        """
        started = self._started_families
        in_head = len(started) < self._first_family_count and all(
            f == self._preferred for f in started
        )
        if in_head:
            wanted = self._preferred
        else:
            wanted = self._other if started[-1] == self._preferred else self._preferred
        if self._untried[wanted]:
            return wanted
        return self._other if wanted == self._preferred else self._preferred

    def _start(self, now: float) -> StartAttempt:
        family = self._next_family()
        address = self._untried[family].pop(0)
        attempt_id = self._next_id
        self._next_id += 1
        self._in_flight[attempt_id] = (family, address)
        self._started_families.append(family)
        self._last_start = now
        return StartAttempt(attempt_id, family, address)

    def _final_error(self) -> OSError:
        if self._last_error is not None:
            return self._last_error
        if self._lookup_error is not None:
            return self._lookup_error
        return OSError(errno.EHOSTUNREACH, "no addresses to connect to")
