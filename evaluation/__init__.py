"""Evaluation of the trained heads: metrics with patient-level bootstrap CIs, calibration,
subgroups, and the clinician-facing reports (HTML + Markdown) and the experiment index.

Reads training's output files only (runs/<task>/predictions.parquet, history.json), never
training internals.
"""
