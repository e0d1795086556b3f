"""Models, one module per chapter system.

- :mod:`mmmlib.models.bayes` -- Bayesian MMMs after LightweightMMM, in Pyro (Chapter 1).
"""
