"""PostgreSQL from Debian's packages, in the state folder, run by an unprivileged system user.

PostgreSQL refuses to run as root, so when the stack runs as root the cluster belongs to the
system user `runstream-pg` (created on first use) and every server command runs through `runuser`.
That user must be able to walk down to the cluster's folder. When the state folder sits where it
cannot (a checkout in root's 0700 home), the cluster lives under `/var/lib/runstream/` instead, in
a 0700 folder of its own named after the state folder, and `<state>/postgres` is a link to it: the
home's permissions stay as they are, and `stack down --purge` removes both.

The roles and their passwords are set over the server's unix socket, as SCRAM verifiers: the
password itself never reaches the server (nor its log). A secure stack serves TCP with TLS only
(`hostssl` lines, the stack's certificate) and gets random passwords.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import asyncpg

from runstream.deploy.local._config import (
    ADMIN_ROLE,
    DATABASE,
    HOST,
    READER_ROLE,
    WRITER_ROLE,
)
from runstream.deploy.local._secure import scram_sha_256_verifier, write_private
from runstream.deploy.local._service import Service, StackError, fill, render

OS_USER = "runstream-pg"
OUTSIDE = Path("/var/lib/runstream")
"""Where a cluster lives when its owner cannot enter the state folder."""
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes, the socket name adds ".s.PGSQL.<port>"
_PROBE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_GRANTS = (  # converge on every `up` (one transaction): the reader reads, and nothing more
    f"ALTER SCHEMA public OWNER TO {WRITER_ROLE}",
    f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {READER_ROLE}",
    f"ALTER DEFAULT PRIVILEGES FOR ROLE {WRITER_ROLE} REVOKE ALL ON TABLES FROM {READER_ROLE}",
    f"GRANT USAGE ON SCHEMA public TO {READER_ROLE}",
    f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}",
    f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {READER_ROLE}",
    f"ALTER DEFAULT PRIVILEGES FOR ROLE {WRITER_ROLE} GRANT USAGE ON SCHEMAS TO {READER_ROLE}",
    f"ALTER DEFAULT PRIVILEGES FOR ROLE {WRITER_ROLE} GRANT SELECT ON TABLES TO {READER_ROLE}",
    f"ALTER DEFAULT PRIVILEGES FOR ROLE {WRITER_ROLE} GRANT SELECT ON SEQUENCES TO {READER_ROLE}",
)


def postgres_bin() -> Path | None:
    """The `bin` folder of the newest PostgreSQL under /usr/lib/postgresql, if any."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if not found:
        return None
    return max(found, key=lambda path: [int(n) for n in re.findall(r"\d+", path.parent.name)])


class PostgresServer(Service):
    """The PostgreSQL cluster under `<state>/postgres/data`, database `runstream` and its roles."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back, disconnect clients, checkpoint

    @property
    def address(self) -> str:
        """`host:port` of the server."""
        return f"{HOST}:{self.config.postgres_port}"

    @property
    def home(self) -> Path:
        """`<state>/postgres`, or the folder it links to (the path the server is given)."""
        link = self.config.state_dir / self.name
        return link.resolve() if link.is_symlink() else link

    def remove_outside_home(self) -> None:
        """Delete the cluster's folder under `OUTSIDE`, if it has one (before a purge)."""
        link = self.config.state_dir / self.name
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)
            link.unlink()

    @property
    def data(self) -> Path:
        """The cluster's data folder."""
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        """The folder of the server's unix socket (0700)."""
        return self.home / "run"

    def prepare(self) -> None:
        """Create the folders and the cluster on first use; write the server config."""
        self._place_home()
        socket_dir = self.socket_dir
        if len(f"{socket_dir}/.s.PGSQL.{self.config.postgres_port}") > _SOCKET_PATH_MAX:
            raise self.fail(f"state folder path too long for a unix socket: {socket_dir}")
        for folder in (self.home, socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
        self.log_file.touch()
        self._give_to_owner(self.home, socket_dir, self.log_file)
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        hba = "pg_hba-secure.conf" if self.config.secure else "pg_hba.conf"
        render(hba, self.data / "pg_hba.conf")
        conf = fill("postgresql.conf", **self._conf_values(socket_dir))
        if self.config.secure:
            conf += fill("postgresql-secure.conf", **self._install_certificate())
        (self.data / "runstream.conf").write_text(conf)
        self._include_runstream_conf()
        self._give_to_owner(self.data / "pg_hba.conf", self.data / "runstream.conf")

    def launch(self) -> int:
        """`pg_ctl start` as the owner; return the postmaster's pid."""
        argv = [str(self._bin("pg_ctl")), "start", "-D", str(self.data), "-l", str(self.log_file)]
        self._run_as_owner([*argv, "-w", "-t", "120", "-s"], what="pg_ctl start")
        return int((self.data / "postmaster.pid").read_text().split()[0])

    async def probe(self) -> bool:
        """Whether the admin role can connect and run a query."""
        try:
            connection = await asyncpg.connect(self._maintenance_url(), timeout=2)
        except _PROBE_ERRORS:
            return False
        try:
            return bool(await connection.fetchval("SELECT 1", timeout=2))
        except _PROBE_ERRORS:
            return False
        finally:
            await connection.close()

    async def configure(self) -> None:
        """Create (or update) the writer and reader roles, the database and the grants."""
        try:
            await self._provision()
        except _PROBE_ERRORS as exc:
            raise self.fail(f"creating the roles and the database failed: {exc!r}") from exc

    async def _provision(self) -> None:
        server = await self._admin_over_socket("postgres")
        try:
            for role in (WRITER_ROLE, READER_ROLE):
                await _ensure_role(server, role, self.config.password(role))
            if not await server.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", DATABASE):
                await server.execute(f"CREATE DATABASE {DATABASE} OWNER {WRITER_ROLE}")
        finally:
            await server.close()
        database = await self._admin_over_socket(DATABASE)
        try:
            async with database.transaction():  # readers never see the revoked moment
                for statement in _GRANTS:
                    await database.execute(statement)
        finally:
            await database.close()

    def _place_home(self) -> None:
        """Link `<state>/postgres` to a folder under `OUTSIDE` when its owner could not enter it."""
        link = self.config.state_dir / self.name
        if os.geteuid() != 0 or link.is_symlink() or _enterable(link.parent):
            return
        if link.exists():
            raise self.fail(f"{OS_USER} cannot enter {link.parent}; move the cluster in {link}")
        digest = hashlib.sha256(str(self.config.state_dir).encode()).hexdigest()[:16]
        outside = OUTSIDE / f"postgres-{digest}"
        OUTSIDE.mkdir(mode=0o755, parents=True, exist_ok=True)
        outside.mkdir(mode=0o700, exist_ok=True)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside, target_is_directory=True)

    def _maintenance_url(self) -> str:
        """The admin's URL for the `postgres` database, which exists from the start."""
        return self.config.database_url(ADMIN_ROLE, database="postgres")

    async def _admin_over_socket(self, database: str) -> asyncpg.Connection:
        """The admin connected through the unix socket (no TCP, no TLS needed)."""
        return await asyncpg.connect(
            host=str(self.socket_dir),
            port=self.config.postgres_port,
            user=ADMIN_ROLE,
            password=self.config.password(ADMIN_ROLE),
            database=database,
            timeout=10,
        )

    def _install_certificate(self) -> dict[str, object]:
        """Copy the stack's certificate and key where the server's owner can read them."""
        folder = self.config.secure_folder.ensure()
        tls = self.home / "tls"
        tls.mkdir(mode=0o700, exist_ok=True)
        cert_file, key_file = tls / "server.crt", tls / "server.key"
        cert_file.write_bytes(folder.certificate.read_bytes())
        write_private(key_file, folder.key.read_bytes())
        self._give_to_owner(tls, cert_file, key_file)
        return {"cert_file": cert_file, "key_file": key_file}

    def _initdb(self) -> None:
        password_file = self.home / "admin-password"
        write_private(password_file, (self.config.password(ADMIN_ROLE) + "\n").encode())
        self._give_to_owner(password_file)
        argv = [str(self._bin("initdb")), "-D", str(self.data), "-U", ADMIN_ROLE]
        argv += [f"--pwfile={password_file}", "-A", "scram-sha-256", "-E", "UTF8"]
        try:
            self._run_as_owner([*argv, "--locale=C.UTF-8"], what="initdb")
        finally:
            password_file.unlink()

    def _conf_values(self, socket_dir: Path) -> dict[str, object]:
        return {"port": self.config.postgres_port, "socket_dir": socket_dir}

    def _include_runstream_conf(self) -> None:
        main = self.data / "postgresql.conf"
        line = "include_if_exists = 'runstream.conf'\n"
        if line not in main.read_text():
            with main.open("a") as handle:
                handle.write("\n" + line)

    def _bin(self, program: str) -> Path:
        folder = postgres_bin()
        if folder is None:
            raise StackError(self.name, "not installed: run `runstream stack install`")
        return folder / program

    def _run_as_owner(self, argv: list[str], *, what: str) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", ensure_os_user(), "--", *argv]
        with self.log_file.open("ab") as log:
            done = subprocess.run(
                argv, check=False, cwd=self.home, stdout=log, stderr=log, timeout=180
            )
        if done.returncode:
            raise self.fail(f"{what} failed (exit {done.returncode})")

    def _give_to_owner(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        owner = pwd.getpwnam(ensure_os_user())
        for path in paths:
            os.chown(path, owner.pw_uid, owner.pw_gid)


def _enterable(folder: Path) -> bool:
    """Whether any user may walk down to `folder` (each existing ancestor has o+x)."""
    for part in (folder, *folder.parents):
        if part.exists() and not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def ensure_os_user() -> str:
    """The unprivileged system user that owns the cluster, created if missing (root only)."""
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        pass
    else:
        return OS_USER
    argv = ["useradd", "--system", "--user-group", "--no-create-home"]
    argv += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", OS_USER]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise StackError("postgres", f"useradd {OS_USER} failed: {done.stderr.strip()}")
    return OS_USER


async def _ensure_role(connection: asyncpg.Connection, role: str, password: str) -> None:
    """Create or update a login role (no other attribute: no superuser, createrole, createdb)."""
    exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname=$1", role)
    verb = "ALTER" if exists else "CREATE"
    verifier = scram_sha_256_verifier(password)
    await connection.execute(f"{verb} ROLE {role} LOGIN PASSWORD '{verifier}'")
