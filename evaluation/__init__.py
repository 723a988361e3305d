"""Evaluation harness: CLIP score, coherence and progress metrics, a VLM judge, and the report.

Evaluates any procedural sequences (ours, another method's, or a built dataset) so numbers are
comparable across methods; see docs/EVALUATION.md.
"""
