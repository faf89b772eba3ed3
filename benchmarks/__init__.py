"""The benchmark harness of alenv: runner, report, speed and accuracy scripts, references."""

__alenv__ = True  # marks this top-level ``benchmarks`` as alenv's (the name is generic; see README)
