"""Stage 4 of a run: showing and checking the results.

The run's results model (JSON), terminal tables, Markdown and HTML reports with their plots,
syrupy snapshots, A/B comparison and the baseline gate.
"""
