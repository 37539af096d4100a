"""Which site a ClientApp serves, from Flower's `node_config`: the only place that reads it.

Deployment (a hospital's SuperNode) passes `data-dir` and `state-dir` (and may pass
`site-config`, a YAML path, and its own `privacy-epsilon` / `privacy-delta`, which win over the
run's: the site enforces its own budget). The simulation engine passes only `partition-id`,
which indexes the sorted site folders of the run's federation directory. `share-weights=false`
lets a site refuse to send encoder weights even when the run shares them (it sends prototypes only).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from shared.data.config import SiteConfig
from shared.data.site import SiteData, federation_sites, load_federation_site
from shared.errors import ConfigError
from shared.privacy.config import PrivacyConfig
from shared.runconfig import RunSettings

NODE_KEYS = ("data-dir", "state-dir", "site-config", "privacy-epsilon", "privacy-delta", "share-weights",
             "partition-id", "num-partitions")


@dataclass(frozen=True)
class NodeSite:
    site_dir: Path
    site: SiteConfig
    state_dir: Path
    privacy: PrivacyConfig
    allow_weights: bool = True  # the site's own say: false keeps its encoder weights home whatever the server asks


def state_dir(root: str | Path, site_name: str) -> Path:
    """The folder under `root` where a site keeps its ledger and encoder (a paired site's `psg/eeg` -> `psg_eeg`)."""
    return Path(root) / re.sub(r"[^A-Za-z0-9_.-]", "_", site_name)


def resolve_node(node_config: Mapping[str, Any], settings: RunSettings) -> NodeSite:
    unknown = sorted(set(node_config) - set(NODE_KEYS))
    if unknown:
        raise ConfigError(f"unknown node_config key(s) {unknown}; allowed: {list(NODE_KEYS)}")
    privacy = settings.privacy
    if "data-dir" in node_config:
        site_dir = Path(str(node_config["data-dir"]))
        if "state-dir" not in node_config:
            raise ConfigError("node_config needs 'state-dir' (where the site keeps its ledger and encoder) beside 'data-dir'")
        folder = Path(str(node_config["state-dir"]))
        if "site-config" in node_config:
            site = SiteConfig.from_mapping(yaml.safe_load(Path(str(node_config["site-config"])).read_text()))
        else:
            site = SiteConfig.from_site_dir(site_dir)
        overrides = {k: float(node_config[f"privacy-{k}"]) for k in ("epsilon", "delta") if f"privacy-{k}" in node_config}
        privacy = dataclasses.replace(privacy, **overrides)
    elif "partition-id" in node_config:
        sites = federation_sites(settings.federation.federation_dir)
        pid = int(node_config["partition-id"])
        if not 0 <= pid < len(sites):
            raise ConfigError(f"partition-id {pid} but {settings.federation.federation_dir} holds {len(sites)} site(s)")
        site_dir = sites[pid]
        site = SiteConfig.from_site_dir(site_dir)
        folder = state_dir(Path(settings.federation.results_dir) / "state", site.name)
    else:
        raise ConfigError("node_config names no site: give 'data-dir' and 'state-dir' (deployment) or run in simulation")
    allow = node_config.get("share-weights", True)
    allow = allow if isinstance(allow, bool) else str(allow).lower() in ("1", "true", "yes")
    return NodeSite(site_dir=site_dir, site=site, state_dir=folder, privacy=privacy, allow_weights=allow)


def load_node_data(node: NodeSite, settings: RunSettings) -> SiteData:
    return load_federation_site(node.site_dir, node.site, settings.data, settings.federation.cache_dir)
