"""The smoke-test device: a one-register byte stream incrementer, and its golden model.

It exists to prove the RTL test infrastructure (Verilog generation, both simulators, the stream
drivers, linting), not as part of pchw's gateware. Imported by :mod:`rtl_tests.test_smoke`
(to generate the Verilog) and by :mod:`rtl_tests.smoke_tb` (for the model).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


def increment_model(payloads: Iterable[int], step: int) -> list[int]:
    """The golden model: each byte plus *step*, modulo 256."""
    return [(payload + step) % 256 for payload in payloads]


class Incrementer(wiring.Component):
    """Add a constant to every byte of a stream, through one register stage.

    Full throughput (one byte per cycle) when the output is always ready; back-pressure on
    ``o_stream`` propagates combinationally to ``i_stream.ready``.

    Parameters
    ----------
    step:
        The constant added, 0 to 255; the sum wraps modulo 256.

    Members
    -------
    i_stream: ``In(stream.Signature(8))``
        Bytes in.
    o_stream: ``Out(stream.Signature(8))``
        Bytes plus :attr:`step` out, :attr:`latency` cycles after they were accepted.

    Raises
    ------
    ValueError
        If *step* is not in 0..255.
    """

    def __init__(self, step: int = 1) -> None:
        step = operator.index(step)
        if not 0 <= step < 256:
            raise ValueError(f"step must be in 0..255, not {step}")
        self._step = step
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_stream": Out(stream.Signature(8)),
        })

    @property
    def step(self) -> int:
        """The constant added to every byte."""
        return self._step

    @property
    def latency(self) -> int:
        """Cycles from a byte's transfer on ``i_stream`` to its transfer on an always-ready
        ``o_stream``."""
        return 1

    def elaborate(self, platform):
        m = Module()
        # The output register takes a new byte when it is empty or being emptied this cycle.
        load = ~self.o_stream.valid | self.o_stream.ready
        m.d.comb += self.i_stream.ready.eq(load)
        with m.If(load):
            m.d.sync += [
                self.o_stream.valid.eq(self.i_stream.valid),
                self.o_stream.p.eq((self.i_stream.p + self._step)[:8]),
            ]
        return m
