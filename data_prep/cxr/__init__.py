"""Chest X-ray preparation: pair each ICU stay with an image, then decode the images once into a cache.

`metadata` reads MIMIC-CXR-JPG's tables, `pairing` applies the time-window rule, `decode`
turns one JPEG into a small square array, and `cache` runs the decoder over every needed
image in parallel and writes one memory-mappable array.
"""
