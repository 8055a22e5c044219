"""The web page and HTTP API (`agegender serve`): FastAPI on uvicorn, one Predictor loaded once.

Needs the `serve` extra: pip install "agegender[serve]".
"""

from __future__ import annotations


def create_app(*args, **kwargs):  # lazy: keeps `import agegender.server` free of FastAPI until used
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
