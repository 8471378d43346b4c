"""Measurements at every checkpoint: behaviour and capability (internals and weights later)."""

from driftlab.measure.behaviour import BehaviourItems, behaviour_metrics, logit_gaps
from driftlab.measure.capability import CapabilityItems, capability_metrics, solved
from driftlab.measure.suite import MeasurementSuite

__all__ = [
    "BehaviourItems",
    "CapabilityItems",
    "MeasurementSuite",
    "behaviour_metrics",
    "capability_metrics",
    "logit_gaps",
    "solved",
]
