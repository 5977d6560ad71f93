"""Benchmarks of the course: every speed, memory and accuracy figure it claims.

Run ``python -m benchmarks --help`` for the sub-commands. Each sub-command
writes its rows to ``benchmarks/results/<name>.json`` together with the machine
it ran on, and ``docs/benchmarks.md`` is regenerated from those files.
"""
