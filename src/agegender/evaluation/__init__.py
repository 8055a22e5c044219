"""Evaluation: metrics, breakdowns and reports (JSON, Markdown, PNG)."""

from .metrics import age_metrics, breakdown, decade_labels, gender_metrics, summarize

__all__ = ["age_metrics", "breakdown", "decade_labels", "gender_metrics", "summarize"]
