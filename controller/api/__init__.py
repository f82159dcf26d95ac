"""The HTTP API (FastAPI) and the status page, built by a factory handed its collaborators."""
