"""A PLL-made ``sync`` clock for boards whose oscillator is slower than the design can run.

:func:`ice40_pll` and :func:`ecp5_pll` choose the divider settings (the search of Yosys'
``icepll`` and ``ecppll`` tools, over the data-sheet ranges below); :class:`PLLDomain` builds
a clock from the board's clock pin through the PLL, and a reset held until the PLL has locked
(and, on iCE40, for the block RAMs' start-up time after configuration).
"""

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io

__all__ = ["PLLSettings", "ice40_pll", "ecp5_pll", "PLLClock"]


@dataclass(frozen=True)
class PLLSettings:
    """Divider settings of one PLL and the output frequency they give (``f_out``, Hz)."""
    family: str
    f_in: float
    f_out: float
    params: dict


def _closest(candidates, f_target, what):
    best = min(candidates, key=lambda c: (abs(c[0] - f_target), c[1:]), default=None)
    if best is None:
        raise ValueError(f"no {what} PLL setting reaches {f_target / 1e6:g} MHz")
    return best


def ice40_pll(f_in, f_target):
    """``SB_PLL40`` settings, simple feedback (iCE40 sysCLOCK PLL, TN1251): the PFD runs at
    ``f_in / (DIVR + 1)`` in 10..133 MHz, the VCO at ``PFD x (DIVF + 1)`` in 533..1066 MHz, and
    the output is ``VCO / 2**DIVQ`` (16..275 MHz)."""
    candidates = []
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f_out = f_vco / 2 ** divq
                if 16e6 <= f_out <= 275e6:
                    candidates.append((f_out, divr, divf, divq, f_pfd))
    f_out, divr, divf, divq, f_pfd = _closest(candidates, f_target, "iCE40")
    # The loop filter for the PFD frequency, as icepll chooses it.
    filter_range = next(i for i, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 1e12), 1)
                        if f_pfd < top)
    return PLLSettings("ice40", f_in, f_out, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                              "FILTER_RANGE": filter_range})


def ecp5_pll(f_in, f_target):
    """``EHXPLLL`` settings with CLKOP as feedback (ECP5 sysCLOCK, TN1263): the PFD runs at
    ``f_in / CLKI_DIV`` (3.125..400 MHz), the output at ``f_in x CLKFB_DIV / CLKI_DIV``, and
    the VCO at ``f_out x CLKOP_DIV`` in 400..800 MHz."""
    candidates = []
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            if not 3.125e6 <= f_out <= 400e6:
                continue
            for clkop_div in range(1, 129):
                if 400e6 <= f_out * clkop_div <= 800e6:
                    candidates.append((f_out, clki_div, clkfb_div, clkop_div))
                    break
    f_out, clki_div, clkfb_div, clkop_div = _closest(candidates, f_target, "ECP5")
    return PLLSettings("ecp5", f_in, f_out, {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div,
                                             "CLKOP_DIV": clkop_div})


class PLLClock(Elaboratable):
    """``clk`` at ``settings.f_out`` from the platform's default clock pin, and ``rst``.

    ``rst`` is high until the PLL reports lock and then for ``hold_s`` seconds (the iCE40 block
    RAMs need about 3 us after configuration; Amaranth's own iCE40 clock waits 15 us). The user
    defines the domain (``sync``) and drives its clock and reset from these two signals.
    """

    def __init__(self, settings, hold_s=15e-6):
        self._s = settings
        self._hold = max(1, int(hold_s * settings.f_out))
        self.clk = Signal(name="pll_clk")
        self.rst = Signal(name="pll_rst", init=1)

    def elaborate(self, platform):
        m = Module()
        s = self._s
        pin = platform.request(platform.default_clk, dir="-")
        clk, lock = self.clk, Signal(name="pll_lock")
        if s.family == "ice40":
            p = s.params
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
                p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"],
                i_PACKAGEPIN=pin.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=clk, o_LOCK=lock)
        else:
            p = s.params
            m.submodules.clk_buf = buf = io.Buffer("i", pin)
            m.submodules.pll = Instance(
                "EHXPLLL", p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_ENABLE="ENABLED",
                p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                p_OUTDIVIDER_MUXA="DIVA", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                a_FREQUENCY_PIN_CLKI=f"{s.f_in / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{s.f_out / 1e6:g}",
                i_CLKI=buf.i, i_CLKFB=clk, i_RST=Const(0), i_STDBY=Const(0),
                i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(0),
                i_PHASESTEP=Const(0), i_PHASELOADREG=Const(0), i_PLLWAKESYNC=Const(0),
                i_ENCLKOP=Const(0), o_CLKOP=clk, o_LOCK=lock)
        # A reset-less counter in the PLL clock: reset until lock, then hold_s more.
        m.domains.pll_por = ClockDomain("pll_por", reset_less=True)
        m.d.comb += ClockSignal("pll_por").eq(clk)
        count = Signal(range(self._hold + 1))
        ready = Signal()
        with m.If(~lock):
            m.d.pll_por += count.eq(0)
        with m.Elif(count != self._hold):
            m.d.pll_por += count.eq(count + 1)
        m.d.pll_por += ready.eq(lock & (count == self._hold))
        m.d.comb += self.rst.eq(~ready)
        # No constraint of our own on clk: nextpnr derives it from the board clock's through the
        # PLL's settings, an independent check of them (the build report shows its figure).
        return m
