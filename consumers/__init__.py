"""Persist, export and watchdog services."""
