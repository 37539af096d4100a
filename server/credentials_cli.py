"""`fedxalign-credentials`: the coordinator's command for the federation's TLS material and site keys.

  fedxalign-credentials make  --out creds --host coordinator.example.org --host 10.1.2.3 --site eeg_a --site ecg_b
  fedxalign-credentials register --out creds --connection fedxalign [--site eeg_a ...]

`make` can be re-run to add sites (existing keys and the CA are kept). `register` adds each site's
public key to a running SuperLink through `flwr supernode register` (a connection named in
$FLWR_HOME/config.toml, which `connection` writes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from fedxalign.server.credentials import make_credentials
from fedxalign.shared.errors import ConfigError


def write_connection(flwr_home: Path, name: str, address: str, ca: Path) -> Path:
    """Add `[superlink.<name>]` (TLS, with our CA) to $FLWR_HOME/config.toml, leaving other entries alone."""
    path = flwr_home / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else ""
    if f"[superlink.{name}]" in text:
        raise ConfigError(f"{path} already has a connection named {name!r}; pick another name or edit the file")
    text += f'\n[superlink.{name}]\naddress = "{address}"\nroot-certificates = "{ca.resolve()}"\n'
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fedxalign-credentials", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="create (or complete) the CA, the SuperLink certificate and site keys")
    mk.add_argument("--out", type=Path, required=True)
    mk.add_argument("--host", action="append", default=[], help="host name or IP the SuperLink is reached at (repeat)")
    mk.add_argument("--site", action="append", default=[], help="site name (repeat)")
    reg = sub.add_parser("register", help="register the sites' public keys with a running SuperLink")
    reg.add_argument("--out", type=Path, required=True)
    reg.add_argument("--connection", required=True, help="connection name in $FLWR_HOME/config.toml")
    reg.add_argument("--site", action="append", default=[], help="only these sites (default: all)")
    reg.add_argument("--wait", type=float, default=60.0, help="seconds to keep retrying while the SuperLink starts")
    con = sub.add_parser("connection", help="write a TLS connection to the SuperLink into $FLWR_HOME/config.toml")
    con.add_argument("--out", type=Path, required=True)
    con.add_argument("--name", required=True)
    con.add_argument("--address", required=True, help="host:port of the SuperLink")
    args = p.parse_args(argv)
    try:
        if args.cmd == "make":
            report = make_credentials(args.out, args.host, args.site)
            for path in report.written:
                private = (path.stat().st_mode & 0o777) == 0o600
                print(f"wrote {path}{' (private, owner-only)' if private else ''}")
            for path in report.kept:
                print(f"kept  {path} (exists; never overwritten)")
        elif args.cmd == "connection":
            flwr_home = Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr"))
            print(f"wrote connection {args.name!r} to {write_connection(flwr_home, args.name, args.address, args.out / 'ca' / 'ca.crt')}")
        else:
            sites = args.site or sorted(d.name for d in (args.out / "sites").iterdir() if d.is_dir())
            for site in sites:
                key = args.out / "sites" / site / "auth_key.pub"
                if not key.is_file():
                    raise ConfigError(f"{key} does not exist; run `fedxalign-credentials make --site {site}` first")
                deadline = time.time() + args.wait
                while True:
                    res = subprocess.run(["flwr", "supernode", "register", str(key), args.connection, "--name", site],
                                         capture_output=True, text=True)
                    if res.returncode == 0 or time.time() > deadline:
                        break
                    time.sleep(2.0)  # the SuperLink may still be starting
                if res.returncode != 0:
                    print(f"error: registering {site} failed: {res.stdout.strip()} {res.stderr.strip()}", file=sys.stderr)
                    return 1
                print(f"registered {site}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
