"""What the stack needs on the machine: Debian packages and the Kafka jars from Maven Central."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from runstream.deploy.local import _process
from runstream.deploy.local._alertmanager import ALERTMANAGER
from runstream.deploy.local._postgres import postgres_bin
from runstream.deploy.local._prometheus import PROMETHEUS, PROMTOOL
from runstream.deploy.local._service import StackError

_SERVICE = "install"


def missing_packages() -> list[str]:
    """The Debian packages whose programs are not on this machine."""
    missing: list[str] = []
    if postgres_bin() is None:
        missing.append("postgresql")
    if not (PROMETHEUS.exists() and PROMTOOL.exists()):
        missing.append("prometheus")
    if not ALERTMANAGER.exists():
        missing.append("prometheus-alertmanager")
    if shutil.which("java") is None:
        missing.append("openjdk-17-jre-headless")
    if shutil.which("mvn") is None:
        missing.append("maven")
    return missing


def install_packages(packages: list[str], log_file: Path) -> None:
    """`apt-get update` once, then install `packages` (no recommends). Needs root."""
    if not packages:
        return
    if os.geteuid() != 0:
        command = "sudo apt-get install -y --no-install-recommends " + " ".join(packages)
        raise StackError(_SERVICE, f"missing packages; run as root, or: {command}")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], log_file, env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], log_file, env=env)


def kafka_jars_present(libs: Path) -> bool:
    """Whether `libs` holds the Kafka broker jars."""
    return any(libs.glob("kafka_2.13-*.jar"))


def install_kafka_jars(libs: Path, log_file: Path) -> bool:
    """Copy Kafka and its runtime dependencies into `libs` with Maven, unless they are there.

    Maven writes into a scratch folder that is renamed at the end, so an interrupted download
    never passes for a complete one. Return whether anything was installed.
    """
    if kafka_jars_present(libs):
        return False
    scratch = libs.with_name(libs.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    pom = Path(str(resources.files("runstream.deploy.local").joinpath("pom.xml")))
    argv = ["mvn", "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={scratch}"]
    _run([*argv, "-DincludeScope=runtime", "-f", str(pom)], log_file)
    shutil.rmtree(libs, ignore_errors=True)
    scratch.rename(libs)
    return True


def _run(argv: list[str], log_file: Path, env: dict[str, str] | None = None) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            done = subprocess.run(argv, check=False, stdout=log, stderr=log, env=env, timeout=1800)
        except (OSError, subprocess.SubprocessError) as exc:
            raise StackError(_SERVICE, f"{argv[0]} failed: {exc}") from exc
    if done.returncode:
        message = f"`{' '.join(argv[:3])}` failed (exit {done.returncode})"
        raise StackError(_SERVICE, message, log_tail=_process.tail(log_file))
