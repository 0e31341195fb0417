"""Stage 2 of a run: rolling dialogues out against the system under test.

The benchmark's request protocol (turns and intent questions), the asynchronous engine (bounded
concurrency) with its jobs, store-backed single-flight calls, resume from the store and xdist row
claims, the sqlite store (call cache, resume journal) and the work queue xdist workers share
through it, and the progress counters.
"""
