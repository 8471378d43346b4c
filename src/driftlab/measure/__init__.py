"""Measurements at every checkpoint: behaviour, capability, internals (persona directions, probes),
weights and outputs."""

from driftlab.measure.behaviour import BehaviourItems, behaviour_metrics, logit_gaps
from driftlab.measure.capability import CapabilityItems, capability_metrics, solved
from driftlab.measure.internals import PersonaDirections, direction_report, last_token_activations
from driftlab.measure.probes import LinearProbe, auroc
from driftlab.measure.suite import MEASUREMENTS, MeasurementSuite, measurement
from driftlab.measure.weights import module_group, output_kl_rows, weight_rows

__all__ = [
    "MEASUREMENTS",
    "BehaviourItems",
    "CapabilityItems",
    "LinearProbe",
    "MeasurementSuite",
    "PersonaDirections",
    "auroc",
    "behaviour_metrics",
    "capability_metrics",
    "direction_report",
    "last_token_activations",
    "logit_gaps",
    "measurement",
    "module_group",
    "output_kl_rows",
    "solved",
    "weight_rows",
]
