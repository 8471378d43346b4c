"""driftlab: does a language model's alignment survive the training that comes after it?"""

__version__ = "0.2.0"
