"""ILSVRC-2012 as the paper feeds it: layout discovery, preparation into a store, batched augmentation.
Imports only alexnet.base."""
