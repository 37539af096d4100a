"""Which site a ClientApp serves, from Flower's `node_config`: the only place that reads it.

Deployment (a hospital's SuperNode) passes `data-dir` and `state-dir` (and may pass
`site-config`, a YAML path). The site's privacy policy comes from `policy-file` (a YAML path),
else `<data-dir>/policy.yaml`, else the strict defaults of `SitePolicy`; the `node_config` keys
in POLICY_KEYS override single fields of it. Flower's simulation engine passes only `partition-id`
(and `num-partitions`), which indexes the sorted node folders of the run's federation directory
(a paired folder, one holding `paired.yaml`, is ONE node unless `federation.paired_as=two`).
A simulated site's policy allows exactly what the run asks: the researcher owns every simulated
site. Only the node's own `node_config` can make it a simulated one (the coordinator's run
config cannot), and a node given `data-dir` is always a deployed site with its own policy. A
deployed `data-dir` that holds `paired.yaml` makes the node a paired site.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.paired import PairedSiteConfig, PairedSiteData, federation_nodes, is_paired_dir, load_paired_site
from fedxalign.shared.data.site import SiteData, load_federation_site
from fedxalign.shared.errors import ConfigError
from fedxalign.shared.privacy.policy import SitePolicy
from fedxalign.shared.protocol import PAIRED
from fedxalign.shared.runconfig import RunSettings

POLICY_KEYS = {"dp-required": "dp_required", "privacy-epsilon": "epsilon", "privacy-delta": "delta", "privacy-unit": "unit",
               "share-weights": "share_weights", "share-metrics": "share_metrics", "share-train-loss": "share_train_loss",
               "max-rounds": "max_rounds"}
NODE_KEYS = ("data-dir", "state-dir", "site-config", "policy-file", *POLICY_KEYS, "partition-id", "num-partitions")


@dataclass(frozen=True)
class NodeSite:
    """A single-modality site (`site`) or a paired one (`paired`; `site` None)."""

    site_dir: Path
    site: SiteConfig | None
    state_dir: Path
    policy: SitePolicy
    paired: PairedSiteConfig | None = None

    @property
    def name(self) -> str:
        return self.paired.name if self.paired is not None else self.site.name

    @property
    def kind(self) -> str:
        """What the node announces and the coordinator checks its replies against: a modality, or `paired`."""
        return PAIRED if self.paired is not None else self.site.modality


def _node_site(site_dir: Path, site_config: str | None) -> tuple[SiteConfig | None, PairedSiteConfig | None]:
    if is_paired_dir(site_dir):
        if site_config:
            raise ConfigError(f"{site_dir} is a paired site (paired.yaml): its halves' site.yaml files configure it, not 'site-config'")
        return None, PairedSiteConfig.from_dir(site_dir)
    if site_config:
        return SiteConfig.from_mapping(yaml.safe_load(Path(site_config).read_text())), None
    return SiteConfig.from_site_dir(site_dir), None


def state_dir(root: str | Path, site_name: str) -> Path:
    """The folder under `root` where a site keeps its ledger and encoder (a paired site's `psg/eeg` -> `psg_eeg`)."""
    return Path(root) / re.sub(r"[^A-Za-z0-9_.-]", "_", site_name)


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def simulated_site_policy(settings: RunSettings) -> SitePolicy:
    """A simulated site's policy: the researcher owns it, so it allows exactly what the run asks (scores included)."""
    fed = settings.federation
    return SitePolicy.permitting(settings.privacy, share_weights=fed.share_weights, share_train_loss=fed.report_train_loss,
                                 rounds=fed.rounds)


def read_policy(node_config: Mapping[str, Any], site_dir: Path, sim_policy: SitePolicy | None) -> SitePolicy:
    """The simulation's policy, else `policy-file`, else `<site_dir>/policy.yaml`, else the strict defaults; then the node keys."""
    if sim_policy is not None:
        policy = sim_policy
    else:
        path = Path(str(node_config["policy-file"])) if "policy-file" in node_config else None
        policy = SitePolicy.load(site_dir, path, named="node_config policy-file")
    convert = {"dp_required": _as_bool, "share_weights": _as_bool, "share_metrics": _as_bool, "share_train_loss": _as_bool,
               "epsilon": float, "delta": float, "unit": str, "max_rounds": int}
    try:
        overrides = {name: convert[name](node_config[key]) for key, name in POLICY_KEYS.items() if key in node_config}
        return dataclasses.replace(policy, **overrides)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad site policy in node_config: {err}") from err


def resolve_node(node_config: Mapping[str, Any], settings: RunSettings) -> NodeSite:
    unknown = sorted(set(node_config) - set(NODE_KEYS))
    if unknown:
        raise ConfigError(f"unknown node_config key(s) {unknown}; allowed: {list(NODE_KEYS)}")
    if "data-dir" in node_config:
        site_dir = Path(str(node_config["data-dir"]))
        if "state-dir" not in node_config:
            raise ConfigError("node_config needs 'state-dir' (where the site keeps its ledger and encoder) beside 'data-dir'")
        folder = Path(str(node_config["state-dir"]))
        site, paired = _node_site(site_dir, str(node_config["site-config"]) if "site-config" in node_config else None)
        sim_policy = None  # a deployed site's policy is its own, never the run's
    elif "partition-id" in node_config:
        sites = federation_nodes(settings.federation.federation_dir, settings.federation.paired_as == "one")
        pid = int(node_config["partition-id"])
        if not 0 <= pid < len(sites):
            raise ConfigError(f"partition-id {pid} but {settings.federation.federation_dir} holds {len(sites)} node(s)")
        site_dir = sites[pid]
        site, paired = _node_site(site_dir, None)
        folder = state_dir(Path(settings.federation.results_dir) / "state", paired.name if paired else site.name)
        sim_policy = simulated_site_policy(settings)
    else:
        raise ConfigError("node_config names no site: give 'data-dir' and 'state-dir' (deployment) or run in simulation")
    return NodeSite(site_dir=site_dir, site=site, state_dir=folder, policy=read_policy(node_config, site_dir, sim_policy),
                    paired=paired)


def load_node_data(node: NodeSite, settings: RunSettings) -> SiteData | PairedSiteData:
    if node.paired is not None:
        return load_paired_site(node.site_dir, settings.data, settings.federation.cache_dir)
    return load_federation_site(node.site_dir, node.site, settings.data, settings.federation.cache_dir)
