"""Monitoring: drift and performance of a version's traffic against its reference profile.

A job: it talks to ``Repo``'s public API only.
"""
