"""The HTTP API."""

from genai_jobs.api.app import create_app, create_asgi_app

__all__ = ["create_app", "create_asgi_app"]
