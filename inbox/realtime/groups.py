"""Channel-layer group names of the realtime contract (see shared/ARCHITECTURE.md)."""

LEADS = "leads"


def agent(user_id: int) -> str:
    return f"agent.{user_id}"


def queue(queue_id: int) -> str:
    return f"queue.{queue_id}"


def ticket(ticket_id: int) -> str:
    return f"ticket.{ticket_id}"
