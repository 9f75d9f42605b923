"""Framework integrations: loggers and callbacks that log to a run (one module each)."""
