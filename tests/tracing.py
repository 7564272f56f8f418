"""Watch what a piece of Python code does, without replacing anything it calls.

A test that swaps a stdlib function for a fake (``hmac.compare_digest = lambda a, b: True``)
proves only that the fake was called. The interpreter's own hooks report the real thing:
``sys.setprofile`` names each C function called (``hmac.compare_digest`` is one), and
``sys.settrace`` with ``f_trace_opcodes`` counts the bytecode instructions executed, so
two calls that took different paths through Python code show different counts.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any


@dataclass
class Trace:
    """What ran inside a ``traced()`` block."""

    opcodes: int = 0  # bytecode instructions executed, in every Python frame
    c_calls: list[Any] = field(default_factory=list)  # each C function called, in order

    def count(self, function: Any) -> int:
        """How many times this very C function object was called."""
        return sum(1 for f in self.c_calls if f is function)


@contextmanager
def traced() -> Iterator[Trace]:
    """Record opcodes and C calls of the current thread while the block runs.

    Whatever tracer or profiler was installed before (a debugger, coverage) is put back.
    """
    trace = Trace()

    def on_opcode(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            trace.opcodes += 1
        return on_opcode

    def on_frame(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return on_opcode

    def on_call(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call":
            trace.c_calls.append(arg)

    old_trace, old_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(on_frame)
    sys.setprofile(on_call)
    try:
        yield trace
    finally:
        sys.setprofile(old_profile)
        sys.settrace(old_trace)
