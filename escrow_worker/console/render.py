"""The console's HTML templates (`templates/*.html`, Jinja2 with autoescaping
on): server-rendered pages, no JavaScript, one small stylesheet inline. Every
form that changes anything carries the session's CSRF token."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["ENV"]

ENV = Environment(
    loader=PackageLoader("escrow_worker.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
