"""Templates and static files of the gateway's pages (loaded with importlib.resources)."""
