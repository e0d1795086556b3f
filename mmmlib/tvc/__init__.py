"""Chapter 5: time-varying coefficients -- state-space smoothers and diffusion.

- :mod:`mmmlib.tvc.world` -- series whose coefficients follow known paths.
- :mod:`mmmlib.tvc.statespace` -- the Kalman smoother and the iterated log-space smoother.
- :mod:`mmmlib.tvc.diffusion` -- the conditional diffusion model of coefficient paths.
- :mod:`mmmlib.tvc.experiment` -- the chapter's experiments and figures.
"""
