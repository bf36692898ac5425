"""The Linli HTTP API (FastAPI): routes, auth, schemas; serves the resident page.

``create_app(settings, clock=...)`` builds the application; ``api.server.main`` runs it.
"""

from api.app import create_app

__all__ = ["create_app"]
