"""What a catalogue's vectors mean: its embedding space (recorded on first write, every other
space refused) and its pinned index type. Mixed into `Catalogue`."""

from __future__ import annotations

from pathlib import Path

from retrieval.encoders.base import EmbeddingSpace
from retrieval.errors import CatalogueError, SpaceMismatchError
from retrieval.index import create_index
from retrieval.store import Store


class SpaceBinding:
    data_dir: Path
    store: Store

    # -- embedding space ----------------------------------------------------------------------------
    @property
    def space(self) -> EmbeddingSpace | None:
        raw = self.store.get_meta("space")
        return EmbeddingSpace.from_json(raw) if raw else None

    def bind_space(self, space: EmbeddingSpace) -> None:
        """Record the space on first write; refuse any other space afterwards. The audio head is
        recorded too, and moves only while the catalogue holds no audio."""
        current = self.space
        if current is None:
            self.store.set_meta("space", space.to_json())
            return
        self.check_space(space)
        if space.audio_head and space.audio_head != current.audio_head:
            self.store.set_meta("space", space.to_json())

    def check_space(self, space: EmbeddingSpace) -> None:
        current = self.space
        if current is None:
            return
        what = f"The catalogue at {self.data_dir}"
        if current != space:
            raise SpaceMismatchError(current.mismatch(space, what))
        recorded = current.audio_head  # "" in catalogues made before it was recorded
        if recorded and space.audio_head and recorded != space.audio_head:
            if self.store.counts().get("audio", 0):
                raise SpaceMismatchError(current.audio_mismatch(space, what))

    # -- index types -------------------------------------------------------------------------------
    def set_default_factory(self, factory: str) -> None:
        # Validate before storing: a bad string kept in the store would break every later open.
        try:
            create_index(factory, self.space.dim if self.space else 8)
        except ValueError as exc:
            raise CatalogueError(str(exc)) from exc
        self.store.set_meta("index_factory", factory)
