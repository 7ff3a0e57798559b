"""Stopping a run cleanly: the interrupt flag and the wall-clock deadline.

Two things end a long run early:

- a signal (SIGINT, i.e. Ctrl-C, SIGTERM, SIGHUP). Once a solver has polled this module (it
  calls :func:`should_stop` at its iteration boundaries), the signal handler only sets a flag
  and the next :func:`should_stop` raises :class:`Interrupted` there, between iterations: the
  interrupt never lands inside a compiled kernel (an exception raised inside a numba function
  surfaces as ``SystemError: ... returned a result with an exception set``), and the checkpoint
  written after the last complete iteration stays valid. A second signal raises at once (the
  user insists). Before any poll (reading files, compiling), a signal raises at once, as Python
  does by default.
- a deadline (:func:`deadline`, the solvers' ``time_limit``): :func:`should_stop` returns True
  once it has passed, and the solver ends the way it ends when its budget is spent, with the
  best result so far. Deadlines nest (the earliest wins) and are absolute ``time.monotonic``
  values, shared by worker processes forked while one is active.

The hooks inside the solvers are one line each: ``if should_stop(): break`` in their loops and
``callback=lbfgs_callback`` on L-BFGS-B, so a stop request is seen within one iteration of the
innermost loop.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import time

#: The signals handled by :func:`handle_signals`.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                if hasattr(signal, name))

_state = {"signal": None, "deadline": None, "polled": False}


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``signum`` is the signal's number (exit status 128 + it)."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    def __reduce__(self):  # crosses process boundaries (restarts and planes in worker processes)
        return (Interrupted, (self.signum,))


def reset() -> None:
    """Forget a pending signal and the polling mark (at the start of a command)."""
    _state.update(signal=None, polled=False)


def interrupted() -> bool:
    """True if a signal has asked the run to stop."""
    return _state["signal"] is not None


def check() -> None:
    """Raise :class:`Interrupted` if a signal has asked the run to stop."""
    _state["polled"] = True
    if _state["signal"] is not None:
        raise Interrupted(_state["signal"])


def remaining() -> float:
    """Seconds until the deadline (``inf`` without one)."""
    d = _state["deadline"]
    return math.inf if d is None else d - time.monotonic()


def should_stop() -> bool:
    """The solvers' hook: raise :class:`Interrupted` after a signal; True once the deadline has
    passed (the caller ends its loop and returns its best result so far)."""
    check()
    return remaining() <= 0


def lbfgs_callback(intermediate_result=None) -> None:
    """``callback`` for :func:`scipy.optimize.minimize`: ends the optimisation (at its last
    iterate, never worse than the start) when :func:`should_stop` says so."""
    if should_stop():
        raise StopIteration


@contextlib.contextmanager
def deadline(seconds):
    """Within the block, :func:`should_stop` is True after ``seconds`` (None: no new limit;
    an enclosing earlier deadline still holds)."""
    before = _state["deadline"]
    if seconds is not None:
        end = time.monotonic() + float(seconds)
        _state["deadline"] = end if before is None else min(before, end)
    try:
        yield
    finally:
        _state["deadline"] = before


def limit_seconds(value) -> float | None:
    """``value`` as a time limit in seconds, or None where it is not a positive finite number
    (no limit here: the method that takes the option refuses it with its own message)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def time_limited(option: str = "time_limit"):
    """Decorator: run the function under :func:`deadline` of its keyword argument ``option``
    (seconds; a value that is not a positive number is left for the function to refuse)."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with deadline(limit_seconds(kwargs.get(option))):
                return fn(*args, **kwargs)
        return run
    return wrap


def _handler(signum, frame):
    if _state["polled"] and _state["signal"] is None:
        _state["signal"] = signum  # seen at the next iteration boundary
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals():
    """Install the handler of :data:`SIGNALS` for the block (main thread only; elsewhere a
    no-op). SIGTERM and SIGHUP then unwind like Ctrl-C: temporary files are removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()
    previous = {}
    for s in SIGNALS:
        if signal.getsignal(s) is signal.SIG_IGN:  # e.g. SIGHUP under nohup: keep ignoring it
            continue
        with contextlib.suppress(OSError, ValueError):
            previous[s] = signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(s, h)
        reset()
