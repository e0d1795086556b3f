"""Inference written for this book, checked against Pyro and LightweightMMM (Chapters 1 and 7).

- :mod:`mmmlib.inference.nuts` -- NUTS for a NumPy log density with its gradient.
- :mod:`mmmlib.inference.vi` -- full-rank Gaussian VI for the same densities.
- :mod:`mmmlib.inference.diagnostics` -- ArviZ diagnostics, interval summaries, ``InferenceData``.
"""
