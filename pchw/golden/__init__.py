"""Golden models of predictive coding: float64 and bit-exact fixed point."""

from .model import FixedModel, FloatModel, LearnResult, Snapshot, energy_rises

__all__ = ["FloatModel", "FixedModel", "LearnResult", "Snapshot", "energy_rises", "make_model"]


def make_model(network, fixed):
    """:class:`FixedModel` if ``fixed`` else :class:`FloatModel`; for a
    :class:`~pchw.graph.Graph`, their graph versions (:mod:`pchw.golden.graph`)."""
    from ..graph import Graph
    if isinstance(network, Graph):
        from .graph import FixedGraphModel, FloatGraphModel
        return FixedGraphModel(network) if fixed else FloatGraphModel(network)
    return FixedModel(network) if fixed else FloatModel(network)
