"""The HTTP server: OpenAI-compatible endpoints over every served model form.

`create_app(ServerSettings(...))` builds the FastAPI app; `serve(settings)` runs it under uvicorn
with SIGTERM draining (what `polyformer serve` does).
"""

from polyformer.server.app import create_app
from polyformer.server.runner import serve
from polyformer.server.settings import ServerSettings, Served, parse_served

__all__ = ["Served", "ServerSettings", "create_app", "parse_served", "serve"]
