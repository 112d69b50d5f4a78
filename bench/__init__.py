"""hiem's benchmarks: ``python -m bench`` (see docs/performance.md).

Every benchmark starts its own real processes on loopback (broker, workers, consumer), measures, and
stops them; every figure is reported next to a baseline measured in the same run.
"""
