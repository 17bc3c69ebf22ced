"""Every write of the desk. Views, API, tasks and commands call these; nothing else writes."""
