"""Flower ServerApp of the coordinator: a thin `@app.main()` over `server.federation_loop`."""

from __future__ import annotations

import logging
from typing import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedxalign.server.federation_loop import run_federation
from fedxalign.server.progress import round_line
from fedxalign.shared.runconfig import RunSettings

log = logging.getLogger(__name__)
# Opacus' import calls logging.basicConfig (a root handler): without this, Flower's records print twice, DEBUG included
logging.getLogger("flwr").propagate = False


def print_progress(rounds: int) -> Callable:
    """Round lines on stdout: `flwr run --stream` shows them to whoever started the run, simulated or deployed."""

    def on_round(summary, results, wall):
        print(round_line(summary, results, wall, rounds), flush=True)

    return on_round


def make_server_app() -> ServerApp:
    """A ServerApp reading its settings from the run's `run_config` (simulated or deployed alike)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = RunSettings.from_flat(context.run_config)
        state = run_federation(grid, s, print_progress(s.federation.rounds))
        log.info("federation finished after round %d; results in %s", state.round, s.federation.results_dir)

    return app


app = make_server_app()
