"""The network of Figure 2, plain PyTorch: layers, local response normalisation, the two-GPU placement, the
per-layer summary. Imports only alexnet.base."""
