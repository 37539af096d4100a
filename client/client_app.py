"""Flower ClientApp of a site: thin handlers over `client.site_round` and `client.evaluation`."""

from __future__ import annotations

import logging

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.allowlist import allowlist_mod
from client.evaluation import evaluate_site
from client.node import load_node_data, resolve_node
from client.site_round import LEDGER_FILE, train_round
from shared.privacy.ledger import PrivacyLedger
from shared.protocol import check_reply, unpack_global
from shared.runconfig import RunSettings

log = logging.getLogger(__name__)


def _arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def make_client_app(settings: RunSettings | None = None) -> ClientApp:
    """A ClientApp; `settings` given by an in-process simulation, else read from the run's `run_config`."""
    app = ClientApp(mods=[allowlist_mod])

    def setup(context: Context):
        s = settings or RunSettings.from_flat(context.run_config)
        if s.federation.client_threads > 0:
            torch.set_num_threads(s.federation.client_threads)
        return s, resolve_node(context.node_config, s)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        _, node = setup(context)
        info = ConfigRecord({"site": node.site.name, "modality": node.site.modality})
        return Message(RecordDict({"info": info}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        s, node = setup(context)
        data = load_node_data(node, s)
        config = msg.content["config"]
        reply = train_round(
            data, node.state_dir, s.model_for(node.site.modality), s.train, node.privacy,
            unpack_global(_arrays(msg.content["global"])), share_weights=bool(config["share-weights"]) and node.allow_weights,
            report_train_loss=s.federation.report_train_loss, round_seed=int(config["round"]),
            anchor_key=node.site.modality,
        )  # train_round has already checked the reply against the allow-list
        content = RecordDict({"release": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in reply.arrays.items()}),
                              "metrics": MetricRecord({k: float(v) for k, v in reply.metrics.items()})})
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        s, node = setup(context)
        data = load_node_data(node, s)
        metrics = evaluate_site(data, node.state_dir, s.model_for(node.site.modality), unpack_global(_arrays(msg.content["global"])),
                                anchor_key=node.site.modality)
        metrics["epsilon"] = PrivacyLedger(node.state_dir / LEDGER_FILE, node.privacy).epsilon()  # read, not spent
        check_reply({}, metrics, n_classes=len(data.vocabulary), embed_dim=s.model.embed_dim, weight_shapes=None,
                    forbidden_sizes=set(), kind="evaluate")
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


app = make_client_app()
