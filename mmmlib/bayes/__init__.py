"""Chapters 1 and 7: Bayesian baselines after LightweightMMM, and their calibration.

- :mod:`mmmlib.bayes.model` -- :class:`BayesianMMM`, the Pyro model (three transforms; cost, flat
  and ROI priors; NUTS and SVI; national and geo).
- :mod:`mmmlib.bayes.density` -- the same national model as a NumPy log density with its gradient,
  for the NUTS and VI of :mod:`mmmlib.inference`.
- :mod:`mmmlib.bayes.evaluate` -- scores against a simulated truth, and the oracle.
- :mod:`mmmlib.bayes.lightweight` -- Chapter 1's experiments; :mod:`mmmlib.bayes.lwmm` runs
  LightweightMMM 0.1.9 itself in its own environment.
- :mod:`mmmlib.bayes.calibration` -- Chapter 7's simulation-based calibration.
- :mod:`mmmlib.bayes.report`, :mod:`mmmlib.bayes.persist` -- a report on a user's fit; saving and
  loading fitted models (``python -m mmmlib fit``).
"""
