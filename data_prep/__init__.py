"""Data preparation: raw MIMIC-IV / MIMIC-CXR-JPG (or the synthetic twin) to parquet and cached tensors.

This is the lowest package of the data flow (data_prep -> models -> training -> evaluation),
so the helpers every stage shares (config loading, atomic writes, errors) live here.
"""
