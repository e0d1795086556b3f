"""Chapter 3: DeepCausal on geo panels -- GRU time-varying effects and a channel graph.

- :mod:`mmmlib.deepcausal.world` -- a geo panel whose spends drive one another along a known graph.
- :mod:`mmmlib.deepcausal.panel` -- scaling, splits and the panel scores (within-region R²).
- :mod:`mmmlib.deepcausal.graph` -- NOTEARS (same-week and lag-one) and graph scores.
- :mod:`mmmlib.deepcausal.model` -- the repaired model; :mod:`mmmlib.deepcausal.peer` runs the
  published ``deepcausalmmm`` package.
- :mod:`mmmlib.deepcausal.experiment` -- the chapter's experiments and figures.
"""
