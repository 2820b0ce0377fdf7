"""Adapters to whatever does each AI-shaped step: the local default, and remote services by settings."""
