"""Completion quality: metrics, the HumanEval single-line infilling tasks, and a sandboxed scorer.

Pure Python (no torch), so it is tested in milliseconds; `codetailor eval`
feeds it completions made through the server's own prompt path.
"""
