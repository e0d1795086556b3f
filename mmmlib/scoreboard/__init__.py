"""Chapter 6: every method on the same worlds and questions.

- :mod:`mmmlib.scoreboard.suite` -- the worlds of the board (easy, correlated, time-varying, funnel).
- :mod:`mmmlib.scoreboard.methods` -- each method fitted the same way, and the sweep.
- :mod:`mmmlib.scoreboard.board` -- the board, its spread over seeds, winners and figures.
"""
