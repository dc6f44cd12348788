"""How a store is made: what its manifest records under "settings", and the chunk size its work is cut into."""

from __future__ import annotations

from dataclasses import dataclass

from alexnet.base.rules import require
from alexnet.data.preprocess import RESIZE
from alexnet.data.store import JPEG_QUALITY


@dataclass(frozen=True)
class StoreSettings:
    image_size: int
    store_format: str = "raw"
    # Images per chunk of work; in a JPEG store also per file, so it is recorded there and a resumed run keeps it.
    chunk_size: int = 256

    def __post_init__(self) -> None:
        require("data", store_format=self.store_format, image_size=self.image_size)

    @property
    def jpeg(self) -> bool:
        return self.store_format == "jpeg"

    @classmethod
    def from_manifest(cls, recorded: dict) -> StoreSettings:
        """The settings a manifest records (a raw store's chunk size is not recorded: the default stands in)."""
        return cls(recorded["image_size"], recorded.get("format", "raw"), recorded.get("chunk_size", cls.chunk_size))

    def as_manifest(self) -> dict:
        """The manifest's and progress.json's "settings", as every version of this code has written them."""
        recorded = {"image_size": self.image_size, "resize": RESIZE}
        if self.jpeg:
            recorded.update(format="jpeg", quality=JPEG_QUALITY, chunk_size=self.chunk_size)
        return recorded

    def same_for_readers(self, recorded: dict) -> bool:
        """Whether a complete store's recorded settings are these: how it was cut into files does not matter to
        its readers."""
        found = {key: value for key, value in recorded.items() if key != "chunk_size"}
        return found == {key: value for key, value in self.as_manifest().items() if key != "chunk_size"}
