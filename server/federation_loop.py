"""The coordinator's loop over Flower's Grid: discover sites, then per round train -> aggregate/align -> evaluate.

A round goes on with the sites that answered in time, down to `federation.min_sites`; a site
that failed may answer again in a later round. The per-round and per-site metrics are
(re)written to the results folder as they come, and the state is checkpointed last, once a
round's evaluation and logs are written. A folder that holds a checkpoint is continued only with
`federation.resume=true` and only by a run with the same settings (`RunSettings.fingerprint`).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedxalign.server.strategy import RoundSummary, ServerState, SiteResult, aggregate_round, site_rows, write_csv, write_json
from fedxalign.shared.errors import FedXAlignError
from fedxalign.shared.protocol import ReplySpec, message_records, reply_problems
from fedxalign.shared.runconfig import FederationConfig, RunSettings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.npz"


class FederationError(FedXAlignError):
    """The federation cannot go on (too few sites answered)."""


@dataclass
class RunLog:
    rounds: list[dict] = field(default_factory=list)
    sites: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, out: Path) -> RunLog:
        """What an interrupted run already wrote, so resuming appends instead of overwriting."""
        log_ = cls()
        if (out / "rounds.json").is_file():
            log_.rounds = json.loads((out / "rounds.json").read_text())
        for name, attr in (("sites.csv", "sites"), ("evaluation.csv", "evals")):
            if (out / name).is_file():
                with (out / name).open(newline="") as fh:
                    setattr(log_, attr, list(csv.DictReader(fh)))
        return log_

    def up_to(self, round_no: int) -> RunLog:
        """Only the rows of rounds 1..round_no: a crash after a round's logs but before its checkpoint
        re-runs that round, and its rows must not appear twice."""
        keep = lambda rows: [r for r in rows if int(float(r["round"])) <= round_no]  # noqa: E731
        return RunLog(keep(self.rounds), keep(self.sites), keep(self.evals))

    def write(self, out: Path) -> None:
        write_json(out / "rounds.json", self.rounds)
        write_csv(out / "sites.csv", self.sites)
        write_csv(out / "evaluation.csv", self.evals)


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def wait_for_nodes(grid: Grid, n: int, timeout_s: float) -> list[int]:
    end = time.time() + timeout_s
    while True:
        ids = sorted(grid.get_node_ids())
        if len(ids) >= n or time.time() > end:
            return ids
        time.sleep(1.0)


def gather_sites(grid: Grid, sites: dict[int, dict[str, str]], fed: FederationConfig, first: bool) -> list[int]:
    """The nodes to train this round: listed by the SuperLink AND answering the query (`sites` keeps who answered).

    The SuperLink can still list a node that died (until its heartbeat expires) while its
    restarted SuperNode has not registered yet; such a node fails the query. Until enough sites
    answer (`expected_sites`, at least `min_sites`) the listing is read and the unanswered nodes
    are asked again, up to `round_timeout_s` for a run's first round and `join_wait_s` later.
    """
    want = max(fed.min_sites, fed.expected_sites)
    end = time.time() + (fed.round_timeout_s if first else fed.join_wait_s)
    node_ids = wait_for_nodes(grid, fed.min_sites, fed.round_timeout_s)
    while True:
        node_ids = wait_for_nodes(grid, want, max(0.0, end - time.time())) if len(node_ids) < want else node_ids
        new = [n for n in node_ids if n not in sites]
        if new:
            sites |= query_sites(grid, new, fed.round_timeout_s)
        targets = [n for n in node_ids if n in sites]
        if len(targets) >= want or time.time() >= end:
            return targets
        time.sleep(1.0)
        node_ids = sorted(grid.get_node_ids())


def query_sites(grid: Grid, node_ids: list[int], timeout_s: float) -> dict[int, dict[str, str]]:
    msgs = [Message(RecordDict(), dst_node_id=n, message_type="query") for n in node_ids]
    out = {}
    replies = list(grid.send_and_receive(msgs, timeout=timeout_s))
    log.debug("queried %d node(s), %d answered", len(node_ids), len(replies))
    for reply in replies:
        if reply.has_error():
            log.warning("a node failed the query: error %s (%s)", reply.error.code, reply.error.reason[:200])
            continue
        records, problems = checked_records(reply, "query", None)
        problems = problems or ([] if "info" in records else ["no 'info' record"])
        if problems:
            log.warning("node %s: query reply dropped: %s", reply.metadata.src_node_id, "; ".join(problems[:5]))
            continue
        info = records["info"][1]
        out[reply.metadata.src_node_id] = {k: str(info[k]) for k in ("site", "modality", "evaluates")}
    return out


def run_federation(grid: Grid, settings: RunSettings, on_round: Callable[[RoundSummary, list[SiteResult], float], None] | None = None) -> ServerState:
    fed = settings.federation
    out = Path(fed.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = start_state(out / CHECKPOINT, settings)
    if state.round >= fed.rounds:
        log.info("the run in %s already finished all %d rounds; nothing to do", out, fed.rounds)
        return state
    sites: dict[int, dict[str, str]] = {}
    runlog = RunLog.load(out).up_to(state.round) if state.round else RunLog()
    for rnd in range(state.round + 1, fed.rounds + 1):
        t0 = time.time()
        targets = gather_sites(grid, sites, fed, first=rnd == state.round + 1)
        if len(targets) < fed.min_sites:
            raise FederationError(f"round {rnd}: only {len(targets)} site(s) reachable, fewer than min_sites={fed.min_sites}")
        cfg = ConfigRecord({"round": rnd, "share-weights": fed.share_weights})
        msgs = [Message(RecordDict({"global": _record(state.broadcast_for(sites[n]["modality"], fed.share_weights)),
                                    "config": cfg}), dst_node_id=n, message_type="train", group_id=str(rnd))
                for n in targets]
        results = []
        for reply in grid.send_and_receive(msgs, timeout=fed.round_timeout_s):
            src = reply.metadata.src_node_id
            name = sites.get(src, {}).get("site", "an unknown node")
            if reply.has_error():  # a refusal (its code says why) or an unreachable node's error from the SuperLink
                log.warning("round %d: %s sent no release: error %s (%s)", rnd, name, reply.error.code, reply.error.reason[:200])
                continue
            if src not in sites:
                continue
            result, problems = checked_result(reply, sites[src], settings)
            if problems:
                log.warning("round %d: dropped the reply of %s: %s", rnd, name, "; ".join(problems[:5]))
                continue
            results.append(result)
        missing = sorted({sites[n]["site"] for n in targets} - {r.site for r in results})
        if missing:
            log.warning("round %d: no reply from %s; going on with %d site(s)", rnd, missing, len(results))
        if len(results) < fed.min_sites:
            raise FederationError(f"round {rnd}: {len(results)} site(s) answered, fewer than min_sites={fed.min_sites}")
        state, summary = aggregate_round(state, results, settings)
        evals = evaluate_sites(grid, state, sites, targets, rnd, settings)
        wall = time.time() - t0
        runlog.rounds.append(asdict(summary) | {"wall_s": wall, "missing": missing,
                                                "mean_balanced_accuracy": _mean([e.get("balanced_accuracy", np.nan) for e in evals])})
        runlog.sites += site_rows(rnd, results)
        runlog.evals += evals
        runlog.write(out)
        state.save(out / CHECKPOINT)  # last: a round is done once its evaluation and logs are written
        if on_round:
            on_round(summary, results, wall)
    return state


def start_state(ckpt: Path, settings: RunSettings) -> ServerState:
    """A fresh state, or, with `federation.resume`, the checkpoint of the same run; anything else is refused."""
    fingerprint = settings.fingerprint()
    if not ckpt.is_file():
        if settings.federation.resume:
            log.warning("resume asked, but %s holds no checkpoint; starting at round 1", ckpt.parent)
        return ServerState(fingerprint=fingerprint)
    state = ServerState.load(ckpt)
    if not settings.federation.resume:
        raise FederationError(f"{ckpt.parent} already holds a run stopped after round {state.round} of {settings.federation.rounds}: "
                              "continue it with federation.resume=true, or give another federation.results_dir")
    if state.fingerprint != fingerprint:
        raise FederationError(f"{ckpt} was written by a run with other settings (fingerprint {state.fingerprint or 'none'}, "
                              f"this run {fingerprint}); resume only with the settings it was started with")
    log.info("resuming from %s after round %d", ckpt, state.round)
    return state


def checked_records(reply: Message, kind: str, spec: ReplySpec | None) -> tuple[dict, list[str]]:
    """A reply's records as plain values and what makes them undocumented; nothing in a reply can raise here."""
    try:
        records = message_records(reply.content)
        return records, reply_problems(kind, records, spec)
    except Exception as err:  # noqa: BLE001 - the server trusts no reply, whatever its form
        return {}, [f"unreadable reply ({type(err).__name__})"]


def checked_result(reply: Message, site: dict[str, str], settings: RunSettings) -> tuple[SiteResult | None, list[str]]:
    """The reply as a SiteResult, or the reasons it is dropped; nothing in a reply can raise here."""
    records, problems = checked_records(reply, "train", settings.reply_spec(site["modality"]))
    if problems:
        return None, problems
    return SiteResult(site=site["site"], modality=site["modality"], arrays=dict(records["release"][1]),
                      metrics={k: float(v) for k, v in records["metrics"][1].items()}), []


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def evaluate_sites(grid: Grid, state: ServerState, sites: dict[int, dict[str, str]], targets: list[int], rnd: int,
                   settings: RunSettings) -> list[dict]:
    # the sites evaluate with what they trained with this round; the broadcast is not sent again. A site whose
    # policy keeps its scores home said so in its query reply and is not asked (a message costs a process start)
    msgs = [Message(RecordDict({"config": ConfigRecord({"round": rnd})}), dst_node_id=n, message_type="evaluate", group_id=str(rnd))
            for n in targets if sites[n].get("evaluates") == "yes"]
    rows = []
    if not msgs:
        return rows
    for reply in grid.send_and_receive(msgs, timeout=settings.federation.round_timeout_s):
        src = reply.metadata.src_node_id
        if reply.has_error() or src not in sites:
            continue
        records, problems = checked_records(reply, "evaluate", settings.reply_spec(sites[src]["modality"]))
        if problems:
            log.warning("round %d: evaluation of %s dropped: %s", rnd, sites[src]["site"], "; ".join(problems[:5]))
            continue
        metrics = records.get("metrics", ("metric", {}))[1]
        if metrics:  # a site whose policy keeps its scores home answers with none
            rows.append({"round": rnd, "site": sites[src]["site"], "modality": sites[src]["modality"],
                         **{k: float(v) for k, v in metrics.items()}})
    return rows
