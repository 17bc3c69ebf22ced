"""Pure routing decisions: facts about a new ticket in, a RoutingDecision out. No DB writes."""

from .engine import RoutingDecision, RoutingFacts, decide

__all__ = ["RoutingDecision", "RoutingFacts", "decide"]
