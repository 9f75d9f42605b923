"""The local stack: real Kafka (KRaft), PostgreSQL, Prometheus and Alertmanager as local processes."""
