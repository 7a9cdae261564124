"""Golden models of predictive coding: float64 and bit-exact fixed point."""

from .model import FixedModel, FloatModel, LearnResult, Snapshot, energy_rises

__all__ = ["FloatModel", "FixedModel", "LearnResult", "Snapshot", "energy_rises", "make_model"]


def make_model(network, fixed):
    """:class:`FixedModel` if ``fixed`` else :class:`FloatModel`."""
    return FixedModel(network) if fixed else FloatModel(network)
