"""`tilltap store broker-config`: the store's whole Mosquitto configuration, as deployed.

One file an operator points Mosquitto at (``mosquitto -c FILE``): a TLS listener with the
store's certificate (`tilltap store tls`), no anonymous login, the password file and ACL
that `tilltap terminal provision` and `tilltap gateway provision` keep, each client's id
bound to its login (so one terminal's login cannot push another off), and packets above
PACKET_BYTES_MAX dropped at the broker. `--group` hands the secret files to the group
Mosquitto runs as (mode 0640), so a broker that drops root can still read them.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

from tools.mosquitto import PACKET_BYTES_MAX
from tools.provision import PUBLIC_MODE, ProvisionError, write_atomically
from tools.tls import mosquitto_lines

MQTTS_PORT = 8883
GROUP_READABLE_MODE = 0o640


def broker_lines(mosquitto_dir: Path, tls_dir: Path, port: int = MQTTS_PORT,
                 bind: str | None = None) -> list[str]:
    """The configuration lines, listener first; every path absolute."""
    mosquitto_dir, tls_dir = mosquitto_dir.resolve(), tls_dir.resolve()
    listener = f"listener {port}" + (f" {bind}" if bind else "")
    tls = mosquitto_lines({name: str(tls_dir / name)
                           for name in ("ca.pem", "broker.pem", "broker.key")})
    return [
        "# tilltap store broker: TLS only, every client logs in, ACL per login",
        "per_listener_settings false",
        listener,
        *tls,
        "allow_anonymous false",
        f"password_file {mosquitto_dir / 'passwd'}",
        f"acl_file {mosquitto_dir / 'acl'}",
        "use_username_as_clientid true",
        f"max_packet_size {PACKET_BYTES_MAX}",
        # Answers are small: with Nagle on, each waits for the client's delayed ACK
        # (about 40 ms a round trip); the gateway and terminals turn it off on their side.
        "set_tcp_nodelay true",
        "persistence true",
        f"persistence_location {mosquitto_dir / 'data'}/",
    ]


def write_broker_config(out: Path, mosquitto_dir: Path, tls_dir: Path, port: int = MQTTS_PORT,
                        bind: str | None = None, group: str | None = None) -> dict[str, str]:
    """Write the configuration to `out`; with `group`, make the password file, ACL and the
    broker's key readable by that group. ProvisionError for a person's mistake."""
    if not 1 <= port <= 0xFFFF:
        raise ProvisionError("--port must be 1..65535")
    secrets = [mosquitto_dir / "passwd", mosquitto_dir / "acl", tls_dir / "broker.key"]
    missing = [str(path) for path in (*secrets, tls_dir / "broker.pem", tls_dir / "ca.pem")
               if not path.is_file()]
    if missing:
        raise ProvisionError(f"missing {', '.join(missing)}: run `tilltap terminal provision`"
                             ", `tilltap gateway provision` and `tilltap store tls` first")
    group_id = None
    if group is not None:
        try:
            group_id = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ProvisionError(f"no group {group!r} on this machine") from None
    (mosquitto_dir / "data").mkdir(parents=True, exist_ok=True)
    write_atomically(out, "\n".join(broker_lines(mosquitto_dir, tls_dir, port, bind)) + "\n",
                     PUBLIC_MODE)
    if group_id is not None:
        for path in (*secrets, mosquitto_dir / "data"):
            os.chown(path, -1, group_id)
            path.chmod(GROUP_READABLE_MODE if path.is_file() else 0o770)
    return {"config": str(out), "run": f"mosquitto -c {out}"}
