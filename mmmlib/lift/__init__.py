"""Chapter 8: what experiments (lift tests) buy the Bayesian MMM.

- :mod:`mmmlib.lift.study` -- the study: designs, arms, scores and the choice of the next test.
- :mod:`mmmlib.lift.plots` -- its figures.

The tests themselves, and how they enter the model, are part of the model
(:mod:`mmmlib.bayes.lift`); the worlds are the scoreboard's (:mod:`mmmlib.scoreboard.suite`).
"""
