"""vipernet.runtime: the real-time loop around one Stack and one Device.

See :mod:`vipernet.runtime.loop` for the loop, its extension points (fd callbacks, hooks,
timers) and the thread-safe kernel mode.
"""

from vipernet.runtime.loop import Runtime, TimerHandle

__all__ = ["Runtime", "TimerHandle"]
