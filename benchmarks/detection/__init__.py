"""The detection score's parts: the fault plan, the scoring, the report (pure) and the
harness that runs the real components (entry point: benchmarks/detection_score.py)."""
