"""Encoders (one per modality, one shared contract) that map windows into the shared latent space."""

from fedxalign.shared.models.encoder import CrissCrossEncoder, EncoderConfig, build_encoder

__all__ = ["CrissCrossEncoder", "EncoderConfig", "build_encoder"]
