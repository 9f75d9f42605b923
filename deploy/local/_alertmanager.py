"""Alertmanager from Debian's package, configured by deploy/alertmanager/alertmanager.yml."""

from __future__ import annotations

from pathlib import Path

import yaml

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
            f"--config.file={self.write_config()}",
            f"--storage.path={self.home / 'data'}",
            f"--web.listen-address={HOST}:{self.config.alertmanager_port}",
            "--cluster.listen-address=",
        ]
        return _process.spawn(argv, log_file=self.log_file, cwd=self.home)

    def write_config(self) -> Path:
        """deploy/alertmanager/alertmanager.yml with its receiver posting to this stack's webhook
        port (so that stacks side by side do not share one).
        """
        config = yaml.safe_load(deploy_file("alertmanager", "alertmanager.yml").read_text())
        url = f"http://{HOST}:{self.config.webhook_port}/alerts"
        for receiver in config["receivers"]:
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = url
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def probe(self) -> bool:
        """Whether `/-/ready` answers."""
        return await http_ok(f"{self.address}/-/ready")

    async def configure(self) -> None:
        """Reload the config, so an edited alertmanager.yml takes effect on `up`."""
        self.write_config()
        status = await http_post(f"{self.address}/-/reload")
        if status != 200:
            raise self.fail(f"reloading the config answered {status}")
