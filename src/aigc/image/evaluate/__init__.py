"""Evaluation of a trained class-conditional image generator on a data version's test split.

`report.evaluate_image_generator` is the whole evaluation: Fréchet distance and
precision/recall in the features of `classifier` (a small classifier fitted once per data
version, no downloaded weights), conditional accuracy, and the floor and trivial generator
beside them (`metrics`); `grid` draws the sample grid.
"""
