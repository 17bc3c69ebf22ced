"""Every scoped read: querysets that reach a user pass through here."""
