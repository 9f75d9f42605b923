"""Where the local stack (`runstream stack up`) answers unless told otherwise: declared once.

The settings' defaults, the frozen configs' defaults and `runstream.deploy.local` all read these,
so a client with no `RUNSTREAM_*` variable set reaches the stack that `stack up` started.
"""

from __future__ import annotations

HOST = "127.0.0.1"
KAFKA_PORT = 19092
KAFKA_CONTROLLER_PORT = 19093
POSTGRES_PORT = 15432
PROMETHEUS_PORT = 19090
ALERTMANAGER_PORT = 19095
EXPORTER_ADDRESS = f"{HOST}:19100"
PERSIST_HEALTH_ADDRESS = f"{HOST}:19101"
WATCHDOG_HEALTH_ADDRESS = f"{HOST}:19102"

BOOTSTRAP_SERVERS = f"{HOST}:{KAFKA_PORT}"
TOPIC = "runstream.events"
DLQ_TOPIC = "runstream.events.dlq"
VERDICT_TOPIC = "runstream.verdicts"

DATABASE = "runstream"
ADMIN_ROLE = "runstream_admin"
WRITER_ROLE = "runstream_writer"
READER_ROLE = "runstream_reader"
PASSWORDS = {  # well-known, local-only passwords; a secure stack makes random ones
    ADMIN_ROLE: "runstream-admin-local",
    WRITER_ROLE: "runstream-writer-local",
    READER_ROLE: "runstream-reader-local",
}


def database_url(role: str, port: int = POSTGRES_PORT) -> str:
    """The plain local stack's libpq URL for `role` (writer, reader or admin)."""
    return f"postgresql://{role}:{PASSWORDS[role]}@{HOST}:{port}/{DATABASE}"


def http_url(port: int) -> str:
    """`http://127.0.0.1:PORT`."""
    return f"http://{HOST}:{port}"
