"""Windows and cached encoder features for head training and offline evaluation.

Texts are scored the way a stream is: ``stream_windows`` / ``stream_window_objects`` run
``guard.windowing`` over the whole text (64 content tokens, a window every 16 new tokens, ending at
word ends; the encoder adds ``[CLS]``/``[SEP]``), and a text's score is the max over its windows.
Training uses a bounded subset of those windows (``train_stream_windows``); ``window_texts`` cuts
plain token blocks (the old training windows, kept for comparison).

Encoding the corpus is the expensive step (tens of minutes on 2 shared cores), so pooled features
are cached under ``build/features/<encoder sha>/`` keyed by the SHA-1 of each window's token ids:
any windowing, any data file and any re-run reuse what is there, and only new windows are encoded.
Shards are float16 (``[n, 7, 384]``), written as they are produced, so an interrupted run resumes.
A rebuilt encoder (different bytes) gets a fresh cache directory.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guard.models import paths
from guard.types import Window

WINDOW_TOKENS = 64
#: stride used when scoring (eval, dev): half-overlapping windows, close to a stream's rolling window
EVAL_STRIDE = 32
#: stride for training windows: non-overlapping (cheaper; max-over-windows training copes)
TRAIN_STRIDE = 64
#: the serving default (policies/default.yaml ``window: {tokens: 64, stride: 16}``)
STREAM_STRIDE = 16


def window_spans(n_tokens: int, size: int = WINDOW_TOKENS, stride: int = EVAL_STRIDE) -> list[tuple[int, int]]:
    """Token ``[start, end)`` spans covering ``n_tokens``; the last window ends at the text's end."""
    if n_tokens <= size:
        return [(0, n_tokens)]
    starts = list(range(0, n_tokens - size + 1, stride))
    if starts[-1] + size < n_tokens:
        starts.append(n_tokens - size)
    return [(s, s + size) for s in starts]


@dataclass(frozen=True)
class Windowed:
    """Windows of many texts: ``ids[k]`` are window k's content ids, ``owner[k]`` its text index."""

    ids: list[np.ndarray]
    owner: np.ndarray  # int64 [n_windows]
    char_spans: list[tuple[int, int]]

    @property
    def offsets(self) -> np.ndarray:
        """``[n_texts + 1]`` start index of each text's windows (windows are grouped by text)."""
        n_texts = int(self.owner.max()) + 1 if len(self.owner) else 0
        counts = np.bincount(self.owner, minlength=n_texts)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def window_texts(texts: Sequence[str], size: int = WINDOW_TOKENS, stride: int = EVAL_STRIDE,
                 tokenizer: object | None = None) -> Windowed:
    """Tokenize (no special tokens) and cut every text into windows. Empty texts get one empty window."""
    from guard.models.tokenizer import WindowTokenizer

    tok = tokenizer if tokenizer is not None else WindowTokenizer.from_file()
    ids: list[np.ndarray] = []
    owner: list[int] = []
    spans: list[tuple[int, int]] = []
    batch = 2048
    for b in range(0, len(texts), batch):
        encs = tok.encode_batch(list(texts[b:b + batch]))  # type: ignore[attr-defined]
        for i, enc in enumerate(encs, start=b):
            for s, e in window_spans(len(enc), size, stride):
                ids.append(enc.ids[s:e])
                owner.append(i)
                if e > s:
                    spans.append((int(enc.offsets[s, 0]), int(enc.offsets[e - 1, 1])))
                else:
                    spans.append((0, 0))
    return Windowed(ids, np.asarray(owner, dtype=np.int64), spans)


class PlanTokenizer:
    """The ``guard.windowing.Tokenizer`` used for planning windows (a ``WindowTokenizer``)."""

    def __init__(self, tokenizer: object | None = None) -> None:
        from guard.models.tokenizer import WindowTokenizer

        self._tok = tokenizer if tokenizer is not None else WindowTokenizer.from_file()

    def encode(self, text: str) -> object:
        return self._tok.encode(text)  # type: ignore[attr-defined]


def stream_window_objects(text: str, stream_id: str, tokenizer: PlanTokenizer,
                          tokens: int = WINDOW_TOKENS, stride: int = STREAM_STRIDE) -> list[Window]:
    """The windows a stream of ``text`` is scored on (``guard.windowing``), however it is chunked."""
    from guard import windowing

    _, planned = windowing.plan(text, 0, 0, stream_id, tokenizer, tokens, stride, final=True)
    wins = [p.window for p in planned]
    if not wins:  # empty / whitespace-only text: one empty window keeps the text scoreable
        wins = [Window(stream_id=stream_id, start=0, end=0, text="", input_ids=np.zeros(0, np.int64))]
    return wins


def stream_windows(texts: Sequence[str], tokens: int = WINDOW_TOKENS, stride: int = STREAM_STRIDE,
                   tokenizer: PlanTokenizer | None = None) -> Windowed:
    """``window_texts`` with the streaming windows of ``guard.windowing`` (the serving path)."""
    tok = tokenizer if tokenizer is not None else PlanTokenizer()
    ids: list[np.ndarray] = []
    owner: list[int] = []
    spans: list[tuple[int, int]] = []
    for i, text in enumerate(texts):
        for w in stream_window_objects(text, f"t{i}", tok, tokens, stride):
            ids.append(w.input_ids)
            owner.append(i)
            spans.append((w.start, w.end))
    return Windowed(ids, np.asarray(owner, dtype=np.int64), spans)


def train_stream_windows(texts: Sequence[str], tokens: int = WINDOW_TOKENS, stride: int = STREAM_STRIDE,
                         long_keep: int = 8, short_prefix_fraction: float = 0.25, seed: int = 0,
                         tokenizer: PlanTokenizer | None = None) -> Windowed:
    """A bounded subset of each text's stream windows, for training.

    Streams score prefixes (the first windows of a text are short) and overlapping windows, so the
    heads must see those as well: a benign answer gets ~4x more windows than it has 64-token blocks,
    and its short first windows carry little context. Encoding every stream window of the corpus is
    too slow on 2 cores, so: a text that fits one window keeps its final (whole-text) window plus,
    for a hash-chosen ``short_prefix_fraction`` of texts, one of its prefix windows; a longer text
    keeps its three prefix windows and ``long_keep - 3`` windows spread evenly over the rest
    (always the last).
    """
    tok = tokenizer if tokenizer is not None else PlanTokenizer()
    ids: list[np.ndarray] = []
    owner: list[int] = []
    spans: list[tuple[int, int]] = []
    for i, text in enumerate(texts):
        wins = stream_window_objects(text, f"t{i}", tok, tokens, stride)
        n = len(wins)
        h = int(hashlib.sha1(f"{seed}:{text}".encode("utf-8")).hexdigest()[:8], 16)
        if n == 1:
            keep = [0]
        elif wins[-1].start == 0 or n <= 4 and all(w.start == 0 for w in wins):
            keep = [n - 1]  # short text: prefixes + the whole text
            if (h % 10_000) / 10_000 < short_prefix_fraction:
                keep.insert(0, (h // 10_000) % (n - 1))
        else:
            rest = list(range(3, n))
            k = min(long_keep - 3, len(rest))
            picks = sorted({rest[int(round(q))] for q in np.linspace(0, len(rest) - 1, k)}) if k else []
            keep = sorted(set(range(min(3, n))) | set(picks) | {n - 1})
        for j in keep:
            w = wins[j]
            ids.append(w.input_ids)
            owner.append(i)
            spans.append((w.start, w.end))
    return Windowed(ids, np.asarray(owner, dtype=np.int64), spans)


def window_key(ids: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).digest()


def encoder_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class FeatureCache:
    """Pooled features of windows, keyed by token ids, stored as float16 shards."""

    def __init__(self, root: Path, encoder_path: Path | None = None) -> None:
        self.encoder_path = encoder_path or paths.build_dir() / paths.ENCODER_INT8
        self.fingerprint = encoder_fingerprint(self.encoder_path)
        self.dir = root / self.fingerprint
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._load()

    def _load(self) -> None:
        if not self.dir.is_dir():
            return
        for f in sorted(self.dir.glob("shard-*.npz")):
            with np.load(f, allow_pickle=False) as z:
                keys, pooled = z["keys"], z["pooled"]
            s = len(self._shards)
            self._shards.append(pooled)
            for r, k in enumerate(keys):
                self._index[bytes(k)] = (s, r)

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, ids: Sequence[np.ndarray]) -> list[int]:
        seen: set[bytes] = set()
        out = []
        for i, w in enumerate(ids):
            k = window_key(w)
            if k not in self._index and k not in seen:
                seen.add(k)
                out.append(i)
        return out

    def fill(self, ids: Sequence[np.ndarray], batch_size: int = 64, shard_size: int = 4096,
             threads: int = 2, progress: Callable[[str], None] | None = None) -> int:
        """Encode every window not in the cache yet (sorted by length to pad little). Returns count."""
        todo = self.missing(ids)
        if not todo:
            return 0
        from guard.models.encoder import OnnxEncoder

        if encoder_fingerprint(self.encoder_path) != self.fingerprint:
            raise RuntimeError(f"{self.encoder_path} changed since the cache was opened; run again")
        enc = OnnxEncoder.from_path(self.encoder_path, intra_op_threads=threads)
        todo.sort(key=lambda i: len(ids[i]))
        self.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        done = 0
        for s in range(0, len(todo), shard_size):
            part = todo[s:s + shard_size]
            pooled = enc.pool([ids[i] for i in part], batch_size=batch_size).astype(np.float16)
            keys = np.array([np.frombuffer(window_key(ids[i]), dtype=np.uint8) for i in part])
            n = len(list(self.dir.glob("shard-*.npz")))
            tmp = self.dir / f".tmp-{n:05d}.npz"
            np.savez(tmp, keys=keys, pooled=pooled)
            tmp.rename(self.dir / f"shard-{n:05d}-{time.time_ns()}.npz")
            shard = len(self._shards)
            self._shards.append(pooled)
            for r, k in enumerate(keys):
                self._index[bytes(k)] = (shard, r)
            done += len(part)
            if progress is not None:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                progress(f"encoded {done}/{len(todo)} windows ({rate:.0f}/s)")
        return done

    def get(self, ids: Sequence[np.ndarray], layers: Sequence[int] | None = None) -> np.ndarray:
        """Features ``[n, L, 384]`` (float16) for windows, all cached already."""
        first = self._shards[0] if self._shards else None
        n_layers = first.shape[1] if first is not None else 7
        sel = list(range(n_layers)) if layers is None else list(layers)
        out = np.empty((len(ids), len(sel), 384), dtype=np.float16)
        for i, w in enumerate(ids):
            s, r = self._index[window_key(w)]
            out[i] = self._shards[s][r, sel]
        return out
