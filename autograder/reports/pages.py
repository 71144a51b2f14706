"""The HTML pages as Jinja2 templates (autograder/reports/templates/): one shell (page.html.j2: doctype, CSS,
<main>) that the feedback, summary and checks pages extend, and one macro for a Japanese/English pair (macros.html.j2: ``bi``).

Templates get plain data — strings, numbers, small dicts and dataclasses — never HTML built in Python. Every
``{{ … }}`` is escaped as ``html.escape`` writes it (``&quot;``, ``&#x27;``: the form the pages have always had),
unless the value is ``markupsafe.Markup``: trusted markup the code builds on purpose, kept to a few marked places.
Autoescape stays on underneath, so anything that reaches the output without passing ``_finalize`` is escaped too.
"""

from __future__ import annotations

import html
from pathlib import Path

import jinja2
from markupsafe import Markup

from ..course import clock
from .report import format_points


def _finalize(value) -> Markup:
    """A value printed by ``{{ … }}``: Markup as it is, anything else as escaped text."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                         keep_trailing_newline=True, finalize=_finalize)
ENV.filters["points"] = format_points
ENV.globals["rehearsing"] = clock.rehearsing          # the site's pages say when its clock is a rehearsal's


def render(template: str, **context) -> str:
    """The page ``template`` (a name in autograder/reports/templates/) rendered with ``context``."""
    return ENV.get_template(template).render(**context)
