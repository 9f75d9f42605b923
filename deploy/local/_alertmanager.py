"""Alertmanager from Debian's package, configured by deploy/alertmanager/alertmanager.yml."""

from __future__ import annotations

from pathlib import Path

from runstream.deploy.local import _process
from runstream.deploy.local._config import HOST
from runstream.deploy.local._probes import http_ok, http_post
from runstream.deploy.local._service import Service, deploy_file

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")


class AlertmanagerServer(Service):
    """Alertmanager without clustering; silences and notification log in `<state>/alertmanager`."""

    name = "alertmanager"

    @property
    def address(self) -> str:
        """The base URL of Alertmanager."""
        return f"http://{HOST}:{self.config.alertmanager_port}"

    def launch(self) -> int:
        """Start Alertmanager in the background."""
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [
            str(ALERTMANAGER),
            f"--config.file={deploy_file('alertmanager', 'alertmanager.yml')}",
            f"--storage.path={self.home / 'data'}",
            f"--web.listen-address={HOST}:{self.config.alertmanager_port}",
            "--cluster.listen-address=",
        ]
        return _process.spawn(argv, log_file=self.log_file, cwd=self.home)

    async def probe(self) -> bool:
        """Whether `/-/ready` answers."""
        return await http_ok(f"{self.address}/-/ready")

    async def configure(self) -> None:
        """Reload the config, so an edited alertmanager.yml takes effect on `up`."""
        status = await http_post(f"{self.address}/-/reload")
        if status != 200:
            raise self.fail(f"reloading the config answered {status}")
