"""Platform connectors. ``registry.get_connector(source)`` returns the one for a source."""
