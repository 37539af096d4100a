"""Flower ClientApp of a site: thin handlers over `client.site_round` and `client.evaluation`, behind the allow-list mod."""

from __future__ import annotations

import logging

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedxalign.client.allowlist import make_allowlist_mod
from fedxalign.client.node import NodeSite, load_node_data, resolve_node
from fedxalign.client.site_round import train_round
from fedxalign.shared.models.encoder import weight_shapes
from fedxalign.shared.privacy.policy import RoundRequest, enforce
from fedxalign.shared.protocol import MODALITIES, ReplySpec, unpack_global, unpack_paired_global
from fedxalign.shared.runconfig import RunSettings

log = logging.getLogger(__name__)
# Opacus' import calls logging.basicConfig (a root handler): without this, Flower's records print twice, DEBUG included
logging.getLogger("flwr").propagate = False


def _arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def make_client_app() -> ClientApp:
    """A ClientApp: the run's settings from `run_config`, the site (and its policy) from `node_config`, simulated or deployed alike."""

    def setup(context: Context) -> tuple[RunSettings, NodeSite]:
        s = RunSettings.from_flat(context.run_config)
        if s.federation.client_threads > 0:
            torch.set_num_threads(s.federation.client_threads)
        return s, resolve_node(context.node_config, s)

    def spec_for(context: Context) -> ReplySpec:
        s, node = setup(context)
        return s.reply_spec(node.kind)  # the run's budget: `enforce` has already held it to the policy's

    app = ClientApp(mods=[make_allowlist_mod(spec_for)])

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        _, node = setup(context)
        # whether evaluate messages are worth sending: a site whose policy keeps its scores home answers them empty
        info = ConfigRecord({"site": node.name, "modality": node.kind, "evaluates": "yes" if node.policy.share_metrics else "no"})
        return Message(RecordDict({"info": info}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        s, node = setup(context)
        config = msg.content["config"]
        share = s.federation.share_weights  # the run config, as the allow-list spec reads it
        request = RoundRequest(privacy=s.privacy, share_weights=share, report_train_loss=s.federation.report_train_loss,
                               round=int(config["round"]))
        privacy = enforce(node.policy, request)  # PolicyRefusal before any data is read or budget spent
        if node.paired is not None:
            reply = _train_paired(msg, s, node, privacy, request, share)
        else:
            reply = _train_single(msg, s, node, privacy, request, share)
        content = RecordDict({"release": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in reply.arrays.items()}),
                              "metrics": MetricRecord({k: float(v) for k, v in reply.metrics.items()})})
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        from fedxalign.client.evaluation import evaluate_paired, evaluate_site  # only evaluate messages pay for it

        s, node = setup(context)
        metrics = {}
        if node.policy.share_metrics and node.paired is not None:
            metrics = evaluate_paired(load_node_data(node, s), node.state_dir, {m: s.model_for(m) for m in MODALITIES}, s.fusion)
        elif node.policy.share_metrics:  # opt-in: scores of the held-out split are not DP
            metrics = evaluate_site(load_node_data(node, s), node.state_dir, s.model_for(node.site.modality),
                                    anchor_key=node.site.modality)
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


def _train_single(msg: Message, s: RunSettings, node: NodeSite, privacy, request: RoundRequest, share: bool):
    m = node.site.modality
    model_cfg = s.model_for(m)
    glob = unpack_global(_arrays(msg.content["global"]), len(s.data.vocabulary), model_cfg.embed_dim,
                         weight_shapes(model_cfg) if share else None)
    return train_round(load_node_data(node, s), node.state_dir, model_cfg, s.train_for(m), privacy, glob, share_weights=share,
                       report_train_loss=request.report_train_loss, round_no=request.round, anchor_key=m,
                       max_releases=node.policy.max_rounds, objective=s.federation.objective(request.round))


def _train_paired(msg: Message, s: RunSettings, node: NodeSite, privacy, request: RoundRequest, share: bool):
    from fedxalign.client.paired_round import train_paired_round

    cfgs = {m: s.model_for(m) for m in MODALITIES}
    globs, fusion = unpack_paired_global(_arrays(msg.content["global"]), len(s.data.vocabulary), s.model.embed_dim,
                                         {m: weight_shapes(c) for m, c in cfgs.items()} if share else None,
                                         s.fusion_shapes() if share else None)
    return train_paired_round(load_node_data(node, s), node.state_dir, cfgs, s.train_for_paired(), privacy, s.fusion, globs, fusion,
                              share_weights=share, report_train_loss=request.report_train_loss, round_no=request.round,
                              max_releases=node.policy.max_rounds, objective=s.federation.objective(request.round))


app = make_client_app()
