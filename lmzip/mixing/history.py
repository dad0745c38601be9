"""A file's history: its context models and mixer, given the file's blocks in order."""

from __future__ import annotations

import copy

from .context import ContextModels
from .mixer import Mixer
from .setting import parse_mix_setting


class History:
    """The context models and mixer of a file's blocks (mixing), from the header's mix setting.

    With a carried history (the default) one ``History`` serves the file's blocks in their order,
    each starting where the one before left off; otherwise every block starts afresh, so each may
    be coded anywhere (``for_block`` is then all a worker needs).
    """

    def __init__(self, mix: str):
        self.setting = parse_mix_setting(mix)
        self.models: ContextModels | None = None
        self.mixer: Mixer | None = None

    @property
    def carried(self) -> bool:
        return self.setting.carried

    def next_block(self, n_streams: int) -> History:
        if self.models is None or not self.carried:
            self.models, self.mixer = ContextModels(n_streams, self.setting.table_bits), Mixer()
        else:
            self.models.next_block(n_streams)
        return self

    def save(self):
        """What ``restore`` needs to undo the blocks coded after this (the encoder's, for a block
        that falls back: the decoder never feeds it to the history)."""
        return None if self.models is None else copy.deepcopy((self.models.ngrams, self.mixer))

    def restore(self, saved) -> None:
        if saved is None:
            self.models = self.mixer = None
        else:
            self.models.ngrams, self.mixer = saved

    @classmethod
    def for_block(cls, mix: str | None) -> History | None:
        """A block's history where blocks are independent (a worker's), or None without mixing."""
        if mix is None:
            return None
        history = cls(mix)
        if history.carried:
            raise ValueError("a carried history needs the file's earlier blocks: code its blocks in order")
        return history
