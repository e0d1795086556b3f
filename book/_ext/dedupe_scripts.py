"""Sphinx extension: load each script once per page.

Jupyter Book 1 registers sphinx-thebe's and sphinx-togglebutton's inline configuration scripts
twice, and the second ``const THEBE_JS_URL = ...`` is a ``SyntaxError`` in every page's console.
This drops repeated entries (same file, same attributes) from a page's script list.
"""

from __future__ import annotations

from typing import Any


def _key(js: Any) -> tuple:
    """File name and attributes (an inline script's body is an attribute); an inline script is
    registered once with file name ``None`` and once with ``''``."""
    filename = getattr(js, "filename", js) or ""
    attributes = getattr(js, "attributes", {})
    return (str(filename), tuple(sorted(attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:  # noqa: ARG001
    seen: set[tuple] = set()
    kept = []
    for js in context.get("script_files", []):
        key = _key(js)
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
