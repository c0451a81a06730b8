"""Retrospective face search for identifying prolific retail-crime offenders."""

__version__ = "0.1.0"
