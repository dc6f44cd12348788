"""Krizhevsky, Sutskever & Hinton (2012), reproduced: the network, its data pipeline and its training."""

__version__ = "0.1.0"
