"""The route table: page modules register their handlers with @route."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

ROUTES: list = []


@dataclass
class Route:
    method: str
    pattern: re.Pattern
    handler: Callable
    allow: object          # "public" | "user" | (predicate(roles) -> bool, refusal sentence)
    on_reactor: bool       # runs on the reactor and may return a Deferred (sign-in only)


def route(method: str, pattern: str, allow="user", on_reactor: bool = False):
    """Register `handler(ctx) -> Response` for METHOD /pattern (named groups become
    ctx.params). Handlers run in the console's thread pool unless on_reactor."""
    def deco(fn):
        ROUTES.append(Route(method, re.compile(f"^{pattern}$"), fn, allow, on_reactor))
        return fn
    return deco


def match(method: str, path: str):
    """(route, params) for a request, (None, allowed_methods) when only the method is
    wrong, (None, None) when nothing matches."""
    methods = set()
    for r in ROUTES:
        m = r.pattern.match(path)
        if m:
            if r.method == method or (method == "HEAD" and r.method == "GET"):
                return r, m.groupdict()
            methods.add(r.method)
    return None, (methods or None)
