"""Evaluation: BEIR-format loading, retrieval metrics and the backend-vs-exact runner."""

from sparsebridge.eval.beir import BeirDataset, load_beir
from sparsebridge.eval.metrics import evaluate
from sparsebridge.eval.runner import EvalReport, run_eval

__all__ = ["BeirDataset", "EvalReport", "evaluate", "load_beir", "run_eval"]
