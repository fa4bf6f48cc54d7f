"""Monitoring: drift and performance of a version's traffic against its reference profile.

A job: it takes the engine (``modelkeep._engine``), never ``Repo``.
"""
