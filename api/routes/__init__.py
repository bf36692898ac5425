"""The routers of API v1, one module per concern."""
