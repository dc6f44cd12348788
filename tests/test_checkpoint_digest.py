"""The checksum written with every checkpoint: over each tensor's path, dtype, shape and bytes, in an order that does
not depend on how the dicts were built, so that a checkpoint written by an earlier version still reads as intact."""

import copy

import torch
import xxhash

from alexnet.base.checkpoints import KEY, digest


def checkpoint() -> dict:
    # twelve optimizer states: their int keys sort as text ("10" before "2"), as every written checksum assumed
    state = {index: {"momentum_buffer": torch.full((2,), float(index))} for index in range(12)}
    return {
        "state_dict": {"w": torch.arange(6.0).reshape(2, 3)},
        "rng": [torch.zeros(3, dtype=torch.uint8)],
        "optimizer_states": [{"state": state}],
        "epoch": 3,
    }


def by_hand(entries: list[tuple[str, torch.Tensor]]) -> str:
    hasher = xxhash.xxh3_128()
    for name, tensor in entries:
        hasher.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        hasher.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def test_the_checksum_is_over_each_tensors_path_dtype_shape_and_bytes_in_text_order_of_the_keys():
    c = checkpoint()
    states = c["optimizer_states"][0]["state"]
    entries = [
        (f"/optimizer_states/0/state/{i}/momentum_buffer", states[i]["momentum_buffer"])
        for i in sorted(states, key=str)
    ]
    entries += [("/rng/0", c["rng"][0]), ("/state_dict/w", c["state_dict"]["w"])]
    assert digest(c) == by_hand(entries)
    assert digest({**c, KEY: "an earlier checksum"}) == digest(c)  # the checksum is not part of what it covers


def test_a_changed_byte_in_a_list_or_a_tensor_under_another_name_changes_the_checksum():
    original = digest(checkpoint())
    in_a_list = checkpoint()
    in_a_list["rng"][0][1] = 7
    renamed = checkpoint()
    renamed["state_dict"] = {"v": renamed["state_dict"].pop("w")}
    assert len({original, digest(in_a_list), digest(renamed), digest(copy.deepcopy(checkpoint()))}) == 3
