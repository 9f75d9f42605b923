"""Deployment: the local stack driver and the Prometheus, Alertmanager and Grafana files."""
