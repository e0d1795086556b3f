"""mmmlib: deep and differentiable marketing-mix models.

The library behind the *mmm-thesis* companion book. Every number in the book is
computed by a function of this package; chapters only call it.

Layout, by what it models:

- :mod:`mmmlib.transforms` -- adstock, carryover, Hill and logistic saturation (Chapter 0).
- :mod:`mmmlib.simulate` -- simulated worlds with known ground truth (Chapter 0).
- :mod:`mmmlib.data` -- the dataset object and the validated CSV loader.
- :mod:`mmmlib.metrics`, :mod:`mmmlib.plots` -- scores and the book's figures.
- :mod:`mmmlib.runtime` -- seeding, threads and device, called first by every chapter.
- :mod:`mmmlib.results` -- the results registry (one JSON per chapter, glued into the text).
- :mod:`mmmlib.book` -- the papermill runner behind ``make book`` / ``make test``.
"""

from __future__ import annotations

import warnings

# tqdm warns "IProgress not found" with an absolute path when ipywidgets is missing;
# it would land on stderr of every chapter (and fail the strict book build). Filter it
# before pyro (which imports tqdm.auto) is imported anywhere.
warnings.filterwarnings("ignore", message="IProgress not found")
# seaborn's boxplot triggers a matplotlib deprecation warning on stderr.
warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="seaborn")
warnings.filterwarnings("ignore", message=".*vert: bool will be deprecated.*")
# Pyro's JIT-compiled NUTS potential uses torch.jit.trace, which torch 2.13 marks deprecated.
warnings.filterwarnings("ignore", message=".*torch.jit.trace. is deprecated.*")

__version__ = "0.1.0"

__all__ = ["__version__"]
