"""Serving a revision over HTTP (Starlette + uvicorn): OIP v2, /predict, /metrics, hot swap.

A job: it reads the repository through ``Repo``'s public API only.
"""
