"""The coordinator: Flower ServerApp, robust aggregation and cross-modal alignment of prototypes."""
