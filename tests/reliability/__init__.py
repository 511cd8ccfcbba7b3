"""Reliability: faults and bad input, with the counts docs/reliability.md reports."""
