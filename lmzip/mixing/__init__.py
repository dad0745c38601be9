"""Between the model and the coder: adaptive context models over the block's history, mixed with the LM.

The language model sees one chunk; a file repeats itself beyond that (names, phrases, markup).
Two kinds of adaptive models learn the file as it is coded, from its **history**: at step t of a
block, every token of every stream of the block at steps < t, and, where the history is
**carried** (the default), every token of the file's earlier blocks. In lockstep the encoder and
the decoder both know exactly those (``ContextModels`` is fed nothing else). A carried history
makes a file's blocks depend on the ones before them (they decode in order); an independent one
(``--independent``) lets them be coded in any order, on any worker.

- token n-grams of orders 1-5: hashed counts of each context and of each (context, token) pair,
  and each context's most frequent next token (a majority vote), in tables of ``2^TABLE_BITS``
  entries per order;
- a match model: the latest earlier occurrence of the stream's last ``MIN_MATCH`` tokens in the
  block, followed as long as it predicts right (it restarts with every block: its memory grows
  with what it indexes, the n-grams' tables do not).

They **propose candidates**: up to ``CANDIDATES`` tokens (the match's prediction, then each order's
top token, longest context first). A token is coded as a chain of binary decisions "it is
candidate i" (given that it is none of the earlier ones) and, if it is none, under the LM's
frequencies with the candidates' taken out. Each decision's probability mixes, in the logistic
domain, the LM's own probability of that candidate with what the n-grams and the match say of it
(paq's mixing: two sets of learned weights, each chosen by its own small context, averaged; adaptive
state maps; a final APM). The chain costs
exactly the product of its decisions, and totals stay the LM's: the whole-chunk encoder only needs,
besides each token's interval, the LM's frequency of each candidate, gathered in the same pass.

The LM's weight starts at 1 and every other at 0, so with nothing learned yet the output is the
LM's. Everything is integer arithmetic (tables from ``decimal``, which rounds the same everywhere):
the same bits on every machine and backend. The header records ``MIX_VERSION``, the tables' size
and whether the history is carried: ``cm2-t20-c`` (``cm2-t20``: independent blocks). lmzip 0.6 and
0.7 wrote recipe ``cm1`` (four orders, one weight set, a fixed learning rate), refused here.

The package follows the data: ``setting`` (the header's words, and which files are mixed),
``context`` (the models over the history and their candidates), ``mixer`` (a decision's
probability), ``decisions`` (a step's decisions coded either way), ``history`` (a file's models and
mixer across its blocks).
"""

from .decisions import CARRIER_NAMES, candidate_frequencies, carriers, decode_mixed, mixed_intervals
from .context import (CANDIDATES, CONTEXT_INPUTS, MATCH_LENGTHS, MATCH_STATES, MIN_MATCH, NGRAM_STATES, ORDERS,
                      ContextModels, MatchModel, NGrams, proposal_grid)
from .history import History
from .mixer import PROB_BITS, PROB_ONE, STRETCH_MAX, Mixer, squash_table, stretch_table
from .setting import CARRIED, MIX_VERSION, RETIRED, TABLE_BITS, MixSetting, mix_setting, mix_setting_for, parse_mix_setting

__all__ = ["CANDIDATES", "CARRIED", "CARRIER_NAMES", "candidate_frequencies", "CONTEXT_INPUTS", "MATCH_LENGTHS", "MATCH_STATES", "MIN_MATCH",
           "MIX_VERSION", "NGRAM_STATES", "ORDERS", "PROB_BITS", "PROB_ONE", "RETIRED", "STRETCH_MAX", "TABLE_BITS",
           "ContextModels", "History", "MatchModel", "Mixer", "MixSetting", "NGrams", "carriers", "decode_mixed",
           "mix_setting", "mix_setting_for", "mixed_intervals", "parse_mix_setting", "proposal_grid", "squash_table", "stretch_table"]
