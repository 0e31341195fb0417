"""Judges of assistant replies: refusal detection and intent-answer parsing."""
