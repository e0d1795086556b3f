"""Chapter 5: time-varying coefficients -- state-space smoothers and diffusion.

- :mod:`mmmlib.tvc.world` -- series whose coefficients follow known paths (the log-OU family).
- :mod:`mmmlib.tvc.wearout` -- the second family: creative wear-out with resets, regime jumps.
- :mod:`mmmlib.tvc.statespace` -- the Kalman smoother and the iterated log-space smoother.
- :mod:`mmmlib.tvc.particle` -- a particle smoother under the wear-out family's true dynamics.
- :mod:`mmmlib.tvc.diffusion` -- the conditional diffusion model of coefficient paths.
- :mod:`mmmlib.tvc.experiment` -- the chapter's experiments and figures.
"""
