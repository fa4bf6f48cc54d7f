"""Serving a revision over HTTP (Starlette + uvicorn): OIP v2, /predict, /metrics, hot swap.

A job: it takes the engine (``modelkeep._engine``), never ``Repo``.
"""
