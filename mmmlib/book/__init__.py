"""The book's tooling: the results registry chapters write, and the runner behind ``make book``.

- :mod:`mmmlib.book.results` -- the results registry (one JSON per chapter, glued into the text).
- :mod:`mmmlib.book.runner` -- executes chapters with papermill, decides what is stale, writes the
  generated pages (``python -m mmmlib.book``).

Models and experiments never import this package; chapters and the runner do.
"""
