"""The REST endpoint under /api: thin routers over trigger() and the run store."""
