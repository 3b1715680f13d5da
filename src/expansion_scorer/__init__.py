"""expansion-scorer: which existing customers are about to expand, why, and what to say."""

__version__ = "0.1.0"
