"""Rollouts as data: a routing table per revision, shared by every kind of server."""

from modelkeep.deploy.routing import STRATEGIES, RoutingTable, canary_percent

__all__ = ["STRATEGIES", "RoutingTable", "canary_percent"]
