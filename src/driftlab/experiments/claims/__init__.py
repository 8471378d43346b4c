"""Claims and verdicts: the registry (``registry``), the metrics a verdict reads (``measured``),
the verdict and its design (``verdict``), the checks claims share (``checks``), and one module per
shipped claim (``reversion``, ``emergent``, ``trojan``, ...), registered by ``registered()``."""

from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import CLAIMS, Claim, Findings, Rule, claim, register
from driftlab.experiments.claims.verdict import Verdict, evaluate, registered, rule_hash

__all__ = ["CLAIMS", "Claim", "Findings", "Measured", "Rule", "Verdict", "claim", "evaluate", "register",
           "registered", "rule_hash"]
