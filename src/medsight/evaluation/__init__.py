"""Evaluation: metrics with bootstrap confidence intervals, calibration, plots and HTML reports.

Modules: :mod:`~medsight.evaluation.classification` (metrics, threshold choice),
:mod:`~medsight.evaluation.calibration` (ECE, reliability curves),
:mod:`~medsight.evaluation.plots` (figures as PNG bytes) and
:mod:`~medsight.evaluation.report` (self-contained HTML report).
"""
