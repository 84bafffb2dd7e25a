"""N-gram language model: counts over the training split, add-k or interpolated Kneser-Ney.

The Markov assumption: the next token depends on the last n-1 tokens only,
P(w_t | w_<t) ~ P(w_t | w_{t-n+1} .. w_{t-1}), estimated from counts. Raw relative frequencies
give 0 to every n-gram the training split never showed (and the validation split shows plenty:
sparsity grows fast with n), so the counts are *smoothed*:

- **add-k** (Lidstone; k=1 is Laplace): P(w | h) = (c(h w) + k) / (c(h) + k V), where c(h)
  sums c(h w) over w. A context never seen gives the uniform 1/V. No back-off.
- **interpolated Kneser-Ney** (Chen & Goodman 1998, section 3.5, one discount D per model):

      P(w | h) = max(c(h w) - D, 0) / c(h)  +  D N1+(h .) / c(h) * P(w | h')

  where h' drops the oldest token of h and N1+(h .) is the number of distinct tokens seen
  after h. At the highest order c counts occurrences; at every lower order it counts
  *continuations*: c(h w) = N1+(. h w), the number of distinct tokens seen before h w, so a
  token that only ever follows one context ("Francisco") gets little weight in the back-off.
  The recursion ends in the uniform distribution 1/V (Chen & Goodman's P(w) interpolated
  with 1/V), so every token, seen or not, gets a probability. A context never seen (c(h) = 0)
  backs off entirely to h'.

Like every family the model maps ids (B, T) to :class:`ModelOutput` logits (here exact
log-probabilities, so a softmax of them gives the distribution back): position t is predicted
from ids[t-n+2 .. t] of the same window. Early in a window fewer tokens are there; the longest
available context is then the top order and uses raw counts, as an n-gram starting with <s> does
in KenLM. It is fitted by counting (:meth:`NGramLM.fit`, no optimizer; the counts are its
buffers, saved in checkpoints like weights) and trained by ``counting.CountingTrainer``.

How the counts are stored: contexts get integer ids by a trie built right to left (a context of
L tokens is its (L-1)-token suffix plus one older token, key ``suffix_id * V + token``, ids
assigned in sorted key order so a lookup is a ``searchsorted``), and each order's counts are a
CSR table over its context ids: ``ptr`` (one row per context), ``tok`` and ``cnt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..config import ModelConfig, require
from .base import LanguageModel, ModelOutput

MAX_N = 12
"""Highest order accepted: beyond it nearly every validation n-gram is unseen and the model is
its (n-1)-gram plus bookkeeping."""

DENSE_BUDGET = 1 << 22
"""Elements of a (positions, V) float64 block computed at once (32 MiB): longer inputs go in chunks."""


@dataclass
class NGramConfig(ModelConfig):
    """An n-gram LM: how far back it looks and how it smooths its counts. It has no weights to
    train: it counts the training split (the run's steps read the split in order,
    ``batch_size x seq_len`` tokens per step, at most once)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"causal", "counting"})

    arch: str = "ngram"
    """Model family: the registry name in ``workbench.models.FAMILIES``."""
    n: int = 3
    """Order: each token is predicted from the n-1 tokens before it (1 = unigram, 2 = bigram, ...)."""
    smoothing: Literal["kneser-ney", "add-k"] = "kneser-ney"
    """'kneser-ney' (interpolated, absolute discounting with continuation counts) or 'add-k'
    (Lidstone: add k to every count; no back-off)."""
    k: float = 1.0
    """add-k only: the pseudo-count added to every n-gram (1 = Laplace; small values such as
    0.01 smooth less)."""
    discount: float = 0.75
    """kneser-ney only: the absolute discount D taken from every seen n-gram's count and given
    to the lower order (0.75 is the usual choice)."""

    def __post_init__(self) -> None:
        require(self.arch == "ngram", "arch", f"NGramConfig is for arch 'ngram', got {self.arch!r}")
        require(isinstance(self.n, int) and not isinstance(self.n, bool) and 1 <= self.n <= MAX_N, "n",
                f"must be an integer from 1 (unigram) to {MAX_N}, got {self.n!r}")
        require(self.smoothing in ("kneser-ney", "add-k"), "smoothing",
                f"unknown {self.smoothing!r}; use 'kneser-ney' or 'add-k'")
        require(isinstance(self.k, (int, float)) and math.isfinite(self.k) and self.k > 0, "k",
                f"must be > 0 (1 = Laplace), got {self.k!r}")
        require(isinstance(self.discount, (int, float)) and 0 < self.discount < 1, "discount",
                f"must be in (0, 1), got {self.discount!r}; 0.75 is the usual choice")
        require(isinstance(self.vocab_size, int) and self.vocab_size >= 0, "vocab_size", "must be >= 0")

    def check_seq_len(self, seq_len: int) -> None:
        require(self.n - 1 <= seq_len, "n",
                f"n={self.n} conditions on {self.n - 1} tokens but the windows hold seq_len={seq_len}; "
                f"lower n to at most {seq_len + 1} or raise seq_len")

    def describe(self) -> str:
        """Order and smoothing, e.g. for tables.

        >>> NGramConfig().describe(), NGramConfig(n=5, smoothing="add-k", k=0.1).describe()
        ('ngram n=3 kn', 'ngram n=5 add-0.1')
        """
        return f"ngram n={self.n} " + ("kn" if self.smoothing == "kneser-ney" else f"add-{self.k:g}")


def _unique(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sorted unique keys, each key's index among them, and the count of each."""
    return torch.unique(keys, sorted=True, return_inverse=True, return_counts=True)


def _csr(row: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Row pointers of a table sorted by ``row``.

    >>> _csr(torch.tensor([0, 0, 2]), 3).tolist()
    [0, 2, 2, 3]
    """
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(row, minlength=num_rows).cumsum(0)])


class NGramLM(LanguageModel):
    """An n-gram model whose buffers are its counts (see the module docstring)."""

    def __init__(self, config: NGramConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("NGramConfig.vocab_size must be set from the tokenizer before building the model")
        self.config = config
        self.V = config.vocab_size
        empty = torch.zeros(0, dtype=torch.long)
        self.register_buffer("tokens_counted", torch.zeros((), dtype=torch.long))
        for L in range(1, config.n):  # context tries; the empty context (L = 0) has id 0
            self.register_buffer(f"ctx{L}_keys", empty.clone())
        for m in range(1, config.n + 1):  # counts of order m (context length m - 1)
            for table in ("raw", "cont") if m < config.n else ("raw",):
                self.register_buffer(f"{table}{m}_ptr", torch.zeros(2 if m == 1 else 1, dtype=torch.long))
                self.register_buffer(f"{table}{m}_tok", empty.clone())
                self.register_buffer(f"{table}{m}_cnt", empty.clone())

    @property
    def max_context(self) -> int:
        """Generation needs only the last n-1 tokens."""
        return max(1, self.config.n - 1)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """An n-gram's parameters are its counts: the number of distinct n-grams stored (all orders)."""
        return sum(int(getattr(self, f"raw{m}_cnt").numel()) for m in range(1, self.config.n + 1))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Counts have the size the fit gave them: take the saved tensors as they are."""
        names = set(self._buffers)
        missing, unexpected = sorted(names - set(state_dict)), sorted(set(state_dict) - names)
        if strict and (missing or unexpected):
            raise RuntimeError(f"n-gram state does not fit this model (n={self.config.n}): "
                               f"missing {missing}, unexpected {unexpected}")
        for name in names & set(state_dict):
            self._buffers[name] = state_dict[name].to(self._buffers[name].device, torch.long)
        return torch.nn.modules.module._IncompatibleKeys(missing, unexpected)

    # --- counting ------------------------------------------------------------------------------

    @torch.no_grad()
    def fit(self, ids: torch.Tensor) -> NGramLM:
        """Count every n-gram (orders 1..n) of the token stream ``ids`` (1-D), replacing any
        earlier counts. Vectorised: a few ``torch.unique`` calls per order."""
        n, V = self.config.n, self.V
        ids = torch.as_tensor(ids, dtype=torch.long).flatten().cpu()
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= V):
            raise ValueError(f"token ids must be in [0, {V}) for this model's vocabulary")
        N = len(ids)
        nxt = ids[1:]  # the token each position t predicts; contexts end at t = 0 .. N-2
        ctx = torch.zeros(max(N - 1, 0), dtype=torch.long)  # context id of length L ending at t (L = 0: id 0)
        start = 0  # first position whose context of length L lies inside the stream
        num_ctx = 1
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # per order: (context ids, tokens) of unique n-grams
        parents: list[torch.Tensor] = [torch.zeros(1, dtype=torch.long)]  # per L: each context's (L-1)-suffix id
        for L in range(n):
            if L >= 1:
                new_start = max(L - 1, 0)
                ctx = ctx[new_start - start :]  # drop positions without L tokens of context
                start = new_start
                pos = torch.arange(start, max(N - 1, start))
                keys, ctx, _ = _unique(ctx * V + ids[pos - L + 1])  # extend each suffix by one older token
                setattr(self, f"ctx{L}_keys", keys)
                parents.append(keys // V)
                num_ctx = len(keys)
            # unigrams count every token; longer n-grams every token after its context
            grams, _, counts = _unique(ids if L == 0 else ctx * V + nxt[start:])
            row, tok = grams // V, grams % V
            self._set_table(f"raw{L + 1}", row, tok, counts, num_ctx)
            pairs.append((row, tok))
        for m in range(1, n):  # continuation counts of order m: distinct tokens seen before each m-gram
            row_up, tok = pairs[m]  # unique (m+1)-grams as (context id of length m, token)
            suffix = parents[m][row_up]  # drop the context's oldest token: an m-gram context of length m-1
            grams, _, counts = _unique(suffix * V + tok)
            self._set_table(f"cont{m}", grams // V, grams % V, counts, len(parents[m - 1]))
        self.tokens_counted = torch.tensor(N, dtype=torch.long)
        return self

    def _set_table(self, name: str, row: torch.Tensor, tok: torch.Tensor, cnt: torch.Tensor, num_rows: int) -> None:
        setattr(self, f"{name}_ptr", _csr(row, num_rows))
        setattr(self, f"{name}_tok", tok)
        setattr(self, f"{name}_cnt", cnt)

    # --- scoring -------------------------------------------------------------------------------

    def _context_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """For each L in 0..n-1, the id of the L-token context ending at each position of
        ``ids`` (B, T), or -1 where it lies before the window's start or was never counted."""
        B, T = ids.shape
        out = [torch.zeros(B, T, dtype=torch.long, device=ids.device)]
        for L in range(1, self.config.n):
            keys = getattr(self, f"ctx{L}_keys")
            older = torch.full_like(ids, -1)
            if T > L - 1:
                older[:, L - 1 :] = ids[:, : T - L + 1]  # the token L-1 places back (the new oldest one)
            prev = out[-1]
            if not len(keys):  # nothing counted yet
                out.append(torch.full_like(ids, -1))
                continue
            key = prev.clamp(min=0) * self.V + older.clamp(min=0)
            idx = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
            found = (prev >= 0) & (older >= 0) & (keys[idx] == key)
            out.append(torch.where(found, idx, torch.full_like(idx, -1)))
        return out

    def _rows(self, table: str, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense counts (len(rows), V) of the given contexts, their totals and their numbers of
        distinct followers (float64)."""
        ptr, tok, cnt = (getattr(self, f"{table}_{p}") for p in ("ptr", "tok", "cnt"))
        start, lens = ptr[rows], ptr[rows + 1] - ptr[rows]
        dense = torch.zeros(len(rows), self.V, dtype=torch.float64, device=rows.device)
        if int(lens.sum()):
            r = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lens)
            first = torch.repeat_interleave(lens.cumsum(0) - lens, lens)
            at = torch.repeat_interleave(start, lens) + torch.arange(len(r), device=rows.device) - first
            dense[r, tok[at]] = cnt[at].double()
        return dense, dense.sum(-1), lens.double()

    def probs(self, ids: torch.Tensor) -> torch.Tensor:
        """P(next token | the window so far) at every position: (B, T) ids -> (B, T, V) float64,
        each row summing to 1."""
        B, T = ids.shape
        ctx = self._context_ids(ids)
        avail = (torch.arange(T, device=ids.device) + 1).clamp(max=self.config.n - 1).expand(B, T)  # tokens of context
        rows_per_chunk = max(1, DENSE_BUDGET // max(self.V, 1))
        out = torch.empty(B * T, self.V, dtype=torch.float64, device=ids.device)
        flat_ctx = [c.reshape(-1) for c in ctx]
        flat_avail = avail.reshape(-1)
        for s in range(0, B * T, rows_per_chunk):
            sl = slice(s, s + rows_per_chunk)
            out[sl] = self._probs_of([c[sl] for c in flat_ctx], flat_avail[sl])
        return out.view(B, T, self.V)

    def _probs_of(self, ctx: list[torch.Tensor], avail: torch.Tensor) -> torch.Tensor:
        """Distributions for Q positions given their context ids per length and how many
        context tokens each has."""
        Q, V, n = len(avail), self.V, self.config.n
        p = torch.full((Q, V), 1.0 / V, dtype=torch.float64, device=avail.device)
        if self.config.smoothing == "add-k":
            k = float(self.config.k)
            for L in range(n):
                sel = torch.nonzero((avail == L) & (ctx[L] >= 0)).flatten()  # seen contexts; unseen stay uniform
                if len(sel):
                    counts, total, _ = self._rows(f"raw{L + 1}", ctx[L][sel])
                    p[sel] = (counts + k) / (total + k * V)[:, None]
            return p
        D = float(self.config.discount)
        for L in range(n):  # lowest order first: each level interpolates with the one below
            for table, which in (("raw", avail == L), ("cont", avail > L)):
                if table == "cont" and L + 1 >= n:
                    continue
                sel = torch.nonzero(which & (ctx[L] >= 0)).flatten()
                if not len(sel):
                    continue
                counts, total, types = self._rows(f"{table}{L + 1}", ctx[L][sel])
                ok = total > 0  # a context seen only at the stream's start has no continuations: back off
                sel, counts, total, types = sel[ok], counts[ok], total[ok], types[ok]
                p[sel] = (counts - D).clamp(min=0) / total[:, None] + (D * types / total)[:, None] * p[sel]
        return p

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """``input_ids`` (B, T) -> logits (B, T, V): the log-probabilities of the next token.

        The other arguments are accepted for the common call and ignored: an n-gram reads left
        to right (padding after a position cannot change it) and has no attention or hidden states.
        """
        logits = self.probs(input_ids).log().float()  # (B, T, V); log 0 cannot happen: every level mixes in 1/V
        return ModelOutput(logits=logits)


# --- sparsity ------------------------------------------------------------------------------------

_KEY_LIMIT = 1 << 62
"""n-gram keys are built as ``key * V + token``; past this they are renumbered first (no overflow)."""


def unseen_fractions(train_ids: torch.Tensor, val_ids: torch.Tensor, max_n: int) -> list[float]:
    """For n = 1 .. ``max_n``: the fraction of the n-grams of the stream ``val_ids`` that never
    occur in the stream ``train_ids``, counted by occurrence (one n-gram per position of
    ``val_ids`` with n-1 tokens before it inside ``val_ids``; an n-gram crossing from one stream
    into the other belongs to neither). It is the share of validation predictions an unsmoothed
    n-gram (relative frequencies) would give probability 0. NaN for an n longer than ``val_ids``.

    Vectorised: each n-gram is an integer key, ``key * V + token`` built from its (n-1)-gram
    prefix's key, and renumbered by ``torch.unique`` only when the next key could overflow int64
    (so any vocabulary and any n work); membership is one ``torch.isin`` per order.

    >>> train, val = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 3])
    >>> [round(f, 3) for f in unseen_fractions(train, val, 4)]  # 3 | 1 3 | 0 1 3 | (none)
    [0.333, 0.5, 1.0, nan]
    """
    if not (isinstance(max_n, int) and max_n >= 1):
        raise ValueError(f"max_n must be an integer >= 1, got {max_n!r}")
    train = torch.as_tensor(train_ids, dtype=torch.long).flatten().cpu()
    val = torch.as_tensor(val_ids, dtype=torch.long).flatten().cpu()
    ids = torch.cat([train, val])
    if len(ids) and int(ids.min()) < 0:
        raise ValueError("token ids must be >= 0")
    V = int(ids.max()) + 1 if len(ids) else 1
    split = len(train)
    key = ids  # key[i] identifies the n-gram ids[i : i + n]
    out: list[float] = []
    for n in range(1, max_n + 1):
        if n > 1:
            if len(key) and int(key.max()) >= _KEY_LIMIT // V:
                key = torch.unique(key, return_inverse=True)[1]  # same n-grams, small ids
            key = key[:-1] * V + ids[n - 1 :]
        seen, grams = key[: max(split - n + 1, 0)], key[split:]  # n-grams starting in train / in val
        out.append(float((~torch.isin(grams, seen)).double().mean()) if len(grams) else math.nan)
    return out


def unseen_fraction(train_ids: torch.Tensor, val_ids: torch.Tensor, n: int) -> float:
    """The fraction of ``val_ids``' n-grams never seen in ``train_ids`` (see :func:`unseen_fractions`).

    >>> unseen_fraction(torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 3]), 2)
    0.5
    """
    return unseen_fractions(train_ids, val_ids, n)[-1]
