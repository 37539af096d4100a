"""One round at a site: restore its encoder and ledger, train privately, release prototypes, build the reply.

Everything the site keeps between rounds lives in its own `state_dir` (encoder weights,
privacy ledger, the reply of every round it answered, the broadcast it trained with), because
every Flower message may run in a fresh process. A round the site already answered is
answered again from that cache: a coordinator that restarts mid-round costs no budget.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from fedxalign.client.training import TrainConfig, TrainReport, dp_train, embed
from fedxalign.shared.atomic_files import write_npz
from fedxalign.shared.data.site import SiteData, WindowDataset
from fedxalign.shared.folder_lock import exclusive
from fedxalign.shared.models.encoder import CrissCrossEncoder, EncoderConfig, build_encoder, weight_shapes
from fedxalign.shared.models.pretraining import load_pretrained, pretrained_path
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.ledger import BudgetExceeded, PrivacyLedger
from fedxalign.shared.privacy.policy import PolicyRefusal
from fedxalign.shared.privacy.release import PrototypeRelease, effective_release_sigma, release_prototypes
from fedxalign.shared.protocol import WEIGHT_PREFIX, GlobalState, ReplySpec, check_reply, pack_global

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"
PAIRED_ENCODER_FILES = {"eeg": "encoder.eeg.pt", "ecg": "encoder.ecg.pt"}  # a paired site's two encoders
FUSION_FILE = "fusion.pt"
LEDGER_FILE = "ledger.json"
REPLIES_DIR = "replies"
LAST_GLOBAL_FILE = "last_global.npz"


@dataclass(frozen=True)
class SiteReply:
    arrays: dict[str, np.ndarray]
    metrics: dict[str, float]
    report: TrainReport | None
    replayed: bool = False


def site_seed(name: str) -> int:
    """Seed of the site's model initialisation and first anchors: public, protects nothing."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def local_anchors(name: str, n_classes: int, dim: int) -> np.ndarray:
    """The site's own anchors before any alignment: random unit vectors seeded by the site's name."""
    rng = np.random.default_rng(site_seed(name))
    a = rng.standard_normal((n_classes, dim))
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def load_encoder(state_dir: Path, cfg: EncoderConfig, site_name: str, weights: dict[str, np.ndarray] | None,
                 filename: str = ENCODER_FILE) -> CrissCrossEncoder:
    """Shared weights from the server win; else the site's own last encoder; else the pretrained start
    (`cfg.pretrained`); else a fresh, seeded one."""
    model = build_encoder(cfg, seed=site_seed(site_name))
    path = state_dir / filename
    if weights is not None:
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    elif path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
    elif cfg.pretrained:
        load_pretrained(model, pretrained_path(cfg.pretrained, cfg.modality))
    return model


def load_paired_encoder(state_dir: Path, cfg: EncoderConfig, node: str, weights: dict[str, np.ndarray] | None) -> CrissCrossEncoder:
    """One modality's encoder of the paired node `node` (its own file in the node's folder, seeded by `<node>/<modality>`)."""
    return load_encoder(state_dir, cfg, f"{node}/{cfg.modality}", weights, PAIRED_ENCODER_FILES[cfg.modality])


def open_ledger(state_dir: Path, privacy_cfg: PrivacyConfig) -> PrivacyLedger:
    """The site's ledger; refuses (LedgerIntegrityError) when it is gone or edited but the folder shows earlier work."""
    return PrivacyLedger(state_dir / LEDGER_FILE, privacy_cfg,
                         earlier_work=[state_dir / f for f in (ENCODER_FILE, *PAIRED_ENCODER_FILES.values(), FUSION_FILE,
                                                               REPLIES_DIR, LAST_GLOBAL_FILE)])


def request_key(round_no: int, glob: GlobalState | dict[str, np.ndarray], *settings: object) -> str:
    """What identifies one request: the round, the broadcast (a GlobalState or its packed arrays) and the settings.
    A coordinator that resumes from its checkpoint sends the same again; another federation, or another broadcast, does not."""
    h = hashlib.sha256(f"{round_no}|{settings!r}".encode())
    for name, arr in sorted((pack_global(glob) if isinstance(glob, GlobalState) else glob).items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:24]


def reply_path(state_dir: Path, round_no: int, key: str) -> Path:
    return state_dir / REPLIES_DIR / f"round_{round_no:05d}_{key}.npz"


def cached_reply(state_dir: Path, round_no: int, key: str) -> SiteReply | None:
    path = reply_path(state_dir, round_no, key)
    if round_no <= 0 or not path.is_file():
        return None
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "meta"}
        metrics = json.loads(str(npz["meta"]))
    return SiteReply(arrays, metrics, None, replayed=True)


def empty_release(n_classes: int, dim: int) -> PrototypeRelease:
    return PrototypeRelease(np.zeros((n_classes, dim), np.float32), np.zeros(n_classes, np.float32))


class RoundWork(Protocol):
    """The parts of a round that differ between a single-modality and a paired site; `answer_round` runs the rest."""

    def train(self, ledger: PrivacyLedger) -> TrainReport | None:
        """DP-SGD on the train split; may raise BudgetExceeded."""

    def keep(self) -> bool:
        """Save the trained model when its weights are finite, else go back to the last saved one; say which."""

    def release(self, ledger: PrivacyLedger | None) -> dict[str, np.ndarray]:
        """The privatised prototypes and counts (recorded in `ledger` when DP is on); may raise BudgetExceeded."""

    def empty(self) -> dict[str, np.ndarray]:
        """A valid release with nothing in it (budget spent, or a round that releases nothing)."""

    def shared(self) -> dict[str, np.ndarray]:
        """The weights sent when the run shares them."""


def answer_round(name: str, state_dir: Path, round_no: int, key: str, privacy_cfg: PrivacyConfig,
                 release_sigma: float, start: Callable[[], RoundWork], spec: ReplySpec, share_weights: bool,
                 report_train_loss: bool, max_releases: int | None) -> SiteReply:
    """The frame of every round: replay, ledger and policy checks, train, keep, release, check and cache the reply.

    `start` builds the round's models only after the ledger is open (the ledger checks the
    folder for earlier work before this round writes any). The whole round holds the folder's
    lock, so a second message for this site waits and then, for the same request, replays.
    """
    with exclusive(state_dir):
        replay = cached_reply(state_dir, round_no, key)
        if replay is not None:
            log.info("site %s: round %d was answered before; replaying that reply (no budget spent)", name, round_no)
            return replay
        ledger = open_ledger(state_dir, privacy_cfg)
        if max_releases is not None and ledger.counts.get("prototype_release", 0) >= max_releases:
            raise PolicyRefusal("max_rounds", "the site has taken part in as many rounds as its policy allows")
        work = start()
        report, arrays = None, work.empty()
        if not privacy_cfg.enabled or ledger.can_afford([(release_sigma, 1.0, 1)]):
            try:
                report = work.train(ledger)
            except BudgetExceeded as err:
                log.warning("site %s: %s", name, err)
            if not work.keep():  # a diverged step must not replace the last good model
                log.error("site %s: training gave non-finite weights; keeping the previous model", name)
            try:
                arrays = work.release(ledger if privacy_cfg.enabled else None)
            except BudgetExceeded as err:
                log.warning("site %s: prototype release refused: %s", name, err)
        else:
            log.warning("site %s: privacy budget spent (epsilon %.3f of %g); answering with an empty release",
                        name, ledger.epsilon(), privacy_cfg.epsilon)
        if share_weights:
            arrays |= work.shared()
        metrics = {
            "epsilon": ledger.epsilon(), "delta": privacy_cfg.delta,
            "epsilon_budget": privacy_cfg.epsilon if privacy_cfg.enabled else float("inf"),
            "released_classes": float((arrays["counts"] > 0).sum()),
        }
        if report_train_loss and report is not None and np.isfinite(report.mean_loss):
            metrics["train_loss"] = report.mean_loss
        check_reply(arrays, metrics, spec)
        if round_no > 0:
            write_npz(reply_path(state_dir, round_no, key), arrays, metrics)
        return SiteReply(arrays, metrics, report)


def finite(module: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in module.state_dict().values())


@dataclass
class _SingleWork:
    """A single-modality site's round: one encoder, one release."""

    data: SiteData
    state_dir: Path
    model_cfg: EncoderConfig
    train_cfg: TrainConfig
    privacy_cfg: PrivacyConfig
    model: CrissCrossEncoder
    anchors: np.ndarray
    present: np.ndarray
    head: torch.Tensor | None
    objective: str
    rng: np.random.Generator | None
    round_no: int
    train_set: WindowDataset = field(init=False)

    def __post_init__(self) -> None:
        self.train_set = self.data.dataset("train")

    def train(self, ledger: PrivacyLedger) -> TrainReport | None:
        return dp_train(self.model, self.train_set, torch.from_numpy(self.anchors), torch.from_numpy(self.present),
                        self.train_cfg, self.privacy_cfg, ledger, self.head, round_no=self.round_no, objective=self.objective)

    def keep(self) -> bool:
        if finite(self.model):
            torch.save(self.model.state_dict(), self.state_dir / ENCODER_FILE)
            return True
        self.model = load_encoder(self.state_dir, self.model_cfg, self.data.site.name, None)
        return False

    def release(self, ledger: PrivacyLedger | None) -> dict[str, np.ndarray]:
        if self.objective != "prototypes":  # a pretraining round releases none
            return self.empty()
        train, cfg = self.train_set, self.privacy_cfg
        rel = release_prototypes(embed(self.model, train.x, self.head), train.y.numpy(), len(self.data.vocabulary), cfg.proto_clip,
                                 cfg.proto_noise_multiplier, cfg.min_count, self.rng, ledger,
                                 subjects=train.subject if cfg.unit == "subject" else None, round_no=self.round_no)
        return {"prototypes": rel.prototypes, "counts": rel.counts}

    def empty(self) -> dict[str, np.ndarray]:
        rel = empty_release(len(self.data.vocabulary), self.model_cfg.embed_dim)
        return {"prototypes": rel.prototypes, "counts": rel.counts}

    def shared(self) -> dict[str, np.ndarray]:
        return {WEIGHT_PREFIX + k: v.detach().numpy().copy() for k, v in self.model.state_dict().items()}


def train_round(data: SiteData, state_dir: str | Path, model_cfg: EncoderConfig, train_cfg: TrainConfig,
                privacy_cfg: PrivacyConfig, glob: GlobalState, share_weights: bool = False,
                report_train_loss: bool = False, round_no: int = 0, anchor_key: str | None = None,
                rng: np.random.Generator | None = None, max_releases: int | None = None,
                objective: str = "prototypes") -> SiteReply:
    """Train on the train split, release privatised prototypes of it, and return the checked reply.

    Before the server has sent anchors the site trains against its own: random unit vectors
    seeded by `anchor_key` (the site's name by default; a federation passes the modality, so
    same-modality sites start in one space and cross-modal agreement is left to the alignment).
    A site out of budget answers with an empty, valid release. `round_no` > 0 numbers the round:
    the same round asked again with the same broadcast and settings (a coordinator resuming from
    its checkpoint) gets the earlier reply, and nothing is spent. `rng` fixes the
    release noise (tests only); by default it is drawn from a generator seeded by the OS.
    `max_releases` (the policy's max_rounds) refuses a new round once that many releases are in the ledger.
    `objective="reconstruction"` is a federated pretraining round: DP-SGD on dual-masked
    reconstruction, no prototypes released (an empty release), the encoder weights shared.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    key = request_key(round_no, glob, model_cfg, train_cfg, privacy_cfg, share_weights, report_train_loss, objective)
    n_classes, dim = len(data.vocabulary), model_cfg.embed_dim

    def start() -> _SingleWork:
        anchors = glob.anchors if glob.anchors is not None else local_anchors(anchor_key or data.site.name, n_classes, dim)
        present = glob.present if glob.present is not None else np.ones(n_classes, bool)
        write_npz(state_dir / LAST_GLOBAL_FILE, pack_global(GlobalState(anchors, present, glob.head)))
        head = torch.from_numpy(np.asarray(glob.head, np.float32)) if glob.head is not None else None
        return _SingleWork(data, state_dir, model_cfg, train_cfg, privacy_cfg,
                           load_encoder(state_dir, model_cfg, data.site.name, glob.weights), anchors, present, head, objective, rng, round_no)

    spec = ReplySpec(n_classes=n_classes, embed_dim=dim, weight_shapes=weight_shapes(model_cfg) if share_weights else None,
                     epsilon_budget=privacy_cfg.epsilon if privacy_cfg.enabled else None,
                     forbidden_sizes=frozenset({int((data.split == s).sum()) for s in ("train", "val", "test")} | {len(data.y)}))
    return answer_round(data.site.name, state_dir, round_no, key, privacy_cfg,
                        effective_release_sigma(privacy_cfg.proto_noise_multiplier), start, spec, share_weights,
                        report_train_loss, max_releases)
