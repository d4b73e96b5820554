"""Feature plugins that are not drivers."""
