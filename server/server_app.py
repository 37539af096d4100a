"""Flower ServerApp of the coordinator: a thin `@app.main()` over `server.federation_loop`."""

from __future__ import annotations

import logging
from typing import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedxalign.server.federation_loop import run_federation
from fedxalign.shared.runconfig import RunSettings

log = logging.getLogger(__name__)


def make_server_app(settings: RunSettings | None = None, on_round: Callable | None = None) -> ServerApp:
    """A ServerApp; `settings` given by an in-process simulation, else read from the run's `run_config`."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings or RunSettings.from_flat(context.run_config)
        state = run_federation(grid, s, on_round)
        log.info("federation finished after round %d; results in %s", state.round, s.federation.results_dir)

    return app


app = make_server_app()
