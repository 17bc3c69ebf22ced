"""Pure routing decisions: facts about a new ticket in, a RoutingDecision out. No DB writes."""

from .engine import (
    CompiledRules,
    RoutingDecision,
    RoutingFacts,
    RuleTrace,
    compile_rules,
    decide,
    explain,
    local_clock,
)

__all__ = [
    "CompiledRules",
    "RoutingDecision",
    "RoutingFacts",
    "RuleTrace",
    "compile_rules",
    "decide",
    "explain",
    "local_clock",
]
