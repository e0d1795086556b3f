"""Chapter 2: the unaware-activated-converted funnel (Diff-MMM), its world and its recovery experiments.

- :mod:`mmmlib.funnel.model` -- the differentiable funnel, its structural mask and the fit.
- :mod:`mmmlib.funnel.world` -- the source's generator and the repaired one.
- :mod:`mmmlib.funnel.outside` -- markets outside the model's family (lags, heterogeneity, another curve).
- :mod:`mmmlib.funnel.experiment` -- recovery over many markets, mask ablations, ParamNet.
"""
