"""Stage 3 of a run: turning replies into verdicts, scores and metrics.

The refusal detector, the readers of intent answers and judgements, the LLM judge and its
rubrics, item verdicts, the per-dialogue and per-question records, the metrics and the
statistics behind their intervals.
"""
