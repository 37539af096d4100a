"""Site data layer: readers for real formats, preprocessing, windows, splits and caching."""

from fedxalign.shared.data.config import PreprocessConfig, SiteConfig
from fedxalign.shared.data.site import SiteData, load_site

__all__ = ["PreprocessConfig", "SiteConfig", "SiteData", "load_site"]
