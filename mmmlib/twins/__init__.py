"""Chapter 4: digital twins -- a variational model of brand surveys and counterfactual marketing.

- :mod:`mmmlib.twins.world` -- the simulated survey with its true latents and lever effects.
- :mod:`mmmlib.twins.model` -- the twin model (SVI, amortised encoder, bootstrap correction).
- :mod:`mmmlib.twins.factor` -- the factor-analysis baseline.
- :mod:`mmmlib.twins.experiment` -- the chapter's experiments and figures.
"""
