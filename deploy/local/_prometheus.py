"""Prometheus from Debian's package.

It scrapes the runstream services, evaluates the deploy/prometheus rules and sends alerts to the
stack's Alertmanager.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from runstream.deploy.local import _process
from runstream.deploy.local._config import HOST
from runstream.deploy.local._probes import http_ok, http_post
from runstream.deploy.local._service import Service, deploy_file, render

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")


class PrometheusServer(Service):
    """Prometheus with its config and TSDB under `<state>/prometheus`."""

    name = "prometheus"

    @property
    def address(self) -> str:
        """The base URL of Prometheus."""
        return f"http://{HOST}:{self.config.prometheus_port}"

    @property
    def config_file(self) -> Path:
        """The generated `prometheus.yml`."""
        return self.home / "prometheus.yml"

    def prepare(self) -> None:
        """Generate `prometheus.yml` and check it (rules included) with promtool."""
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.config
        render(
            "prometheus.yml",
            self.config_file,
            rules_glob=deploy_file("prometheus") / "*.rules.yml",
            alertmanager_address=f"{HOST}:{config.alertmanager_port}",
            exporter_address=config.exporter_address,
            persist_address=config.persist_health_address,
            watchdog_address=config.watchdog_health_address,
            prometheus_address=f"{HOST}:{config.prometheus_port}",
        )
        argv = [str(PROMTOOL), "check", "config", str(self.config_file)]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise self.fail(f"promtool rejects the config:\n{done.stdout}{done.stderr}")

    def launch(self) -> int:
        """Start Prometheus in the background."""
        argv = [
            str(PROMETHEUS),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address={HOST}:{self.config.prometheus_port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
        ]
        return _process.spawn(argv, log_file=self.log_file, cwd=self.home)

    async def probe(self) -> bool:
        """Whether `/-/ready` answers."""
        return await http_ok(f"{self.address}/-/ready")

    async def configure(self) -> None:
        """Regenerate the config and reload it, so edited rule files take effect on `up`."""
        self.prepare()
        status = await http_post(f"{self.address}/-/reload")
        if status != 200:
            raise self.fail(f"reloading the config answered {status}")
