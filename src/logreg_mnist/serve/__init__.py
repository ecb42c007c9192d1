"""``logreg-mnist serve``: a local web page to draw a digit and watch the model decide.

``run_view`` computes what the page shows (no web code); ``app`` holds the Starlette
routes and the uvicorn server; ``static/index.html`` is the page (plain JavaScript, a
canvas, nothing fetched from the network). Starlette and uvicorn are imported here only.
"""

from .app import MAX_BODY_BYTES, create_app, serve
from .run_view import RunView

__all__ = ["MAX_BODY_BYTES", "RunView", "create_app", "serve"]
