"""The in-memory index of one source's records, and its file under `STATE/index/`.

Lookups never scan every record: exact keys are a dict, prefixes a bisect over the sorted
keys, words a dict of postings, and fuzzy matching first narrows the keys by shared
bigrams (one vectorized `bincount`) before rapidfuzz scores the survivors. A source's index is
built in a worker thread and swapped in whole, so a search sees either the old or the new one.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

from hoodyd.apps.records import AppRecord

Tier = Literal["exact", "prefix", "word", "fuzzy"]
TIER_ORDER: dict[Tier, int] = {"exact": 0, "prefix": 1, "word": 2, "fuzzy": 3}
INDEX_FORMAT = 1
PREFIX_KEYS = 300  # keys kept per prefix lookup: the shortest ones, the closest matches
FUZZY_KEYS = 100
FUZZY_CUTOFF = 70.0
FUZZY_POOL = 3000  # keys scored by rapidfuzz after the bigram filter
_SPLIT = re.compile(r"[^0-9a-z]+")


class Lookup(msgspec.Struct, array_like=True):
    """The lookup tables, built once at sync time and persisted beside the records so that
    a start-up only decodes them. `grams` postings are CSR arrays of key positions."""

    keys: list[str]  # sorted, unique, lower-case
    key_records: list[list[int]]  # parallel to keys
    words: list[str]
    word_records: list[list[int]]  # parallel to words
    grams: list[str]
    gram_offsets: bytes  # int64[len(grams) + 1]
    gram_data: bytes  # int32 key positions


class IndexFile(msgspec.Struct, array_like=True):
    """What `STATE/index/<source_id>.msgpack` holds."""

    format: int
    source_id: str
    source_type: str
    synced_at: float
    duration_ms: float
    records: list[AppRecord]
    details: dict[str, Any]
    lookup: Lookup | None = None


@dataclass(frozen=True, slots=True)
class Match:
    record: int
    tier: Tier
    key: str
    # prefix: extra characters; fuzzy: rapidfuzz ratio 0-100; exact/word: 0
    quality: float


def words_of(text: str) -> list[str]:
    return [w for w in _SPLIT.split(text.lower()) if w]


def _bigrams(key: str) -> set[str]:
    padded = f"\x02{key}\x03"
    return {padded[i : i + 2] for i in range(len(padded) - 1)}


def build_lookup(records: list[AppRecord]) -> Lookup:
    key_postings: dict[str, list[int]] = defaultdict(list)
    word_postings: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        keys = {record.name.lower(), record.title.lower()}
        keys.update(b.rsplit("/", 1)[-1].lower() for b in record.binaries)
        for key in keys:
            key_postings[key].append(i)
        words: set[str] = set()
        for text in (record.name, record.title, *record.keywords):
            words.update(words_of(text))
        for word in words - keys:
            word_postings[word].append(i)
    keys_sorted = sorted(key_postings)
    grams: dict[str, list[int]] = defaultdict(list)
    for position, key in enumerate(keys_sorted):
        for gram in _bigrams(key):
            grams[gram].append(position)
    gram_names = sorted(grams)
    offsets = np.zeros(len(gram_names) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(grams[g]) for g in gram_names])
    data = np.fromiter(
        (p for g in gram_names for p in grams[g]), dtype=np.int32, count=int(offsets[-1])
    )
    words_sorted = sorted(word_postings)
    return Lookup(
        keys=keys_sorted,
        key_records=[key_postings[k] for k in keys_sorted],
        words=words_sorted,
        word_records=[word_postings[w] for w in words_sorted],
        grams=gram_names,
        gram_offsets=offsets.tobytes(),
        gram_data=data.tobytes(),
    )


class SourceIndex:
    """Read-only lookup structures over one source's records."""

    def __init__(self, file: IndexFile) -> None:
        if file.lookup is None:
            file.lookup = build_lookup(file.records)
        lookup = file.lookup
        self.source_id = file.source_id
        self.source_type = file.source_type
        self.synced_at = file.synced_at
        self.duration_ms = file.duration_ms
        self.details = file.details
        self.records = file.records
        self.keys = lookup.keys
        self.key_records: dict[str, list[int]] = dict(
            zip(lookup.keys, lookup.key_records, strict=True)
        )
        self.word_records: dict[str, list[int]] = dict(
            zip(lookup.words, lookup.word_records, strict=True)
        )
        self.key_lengths: npt.NDArray[np.int32] = np.fromiter(
            (len(k) for k in self.keys), dtype=np.int32, count=len(self.keys)
        )
        self._gram_positions = {g: i for i, g in enumerate(lookup.grams)}
        self._gram_offsets = np.frombuffer(lookup.gram_offsets, dtype=np.int64)
        self._gram_data = np.frombuffer(lookup.gram_data, dtype=np.int32)

    def gram_postings(self, gram: str) -> npt.NDArray[np.int32] | None:
        position = self._gram_positions.get(gram)
        if position is None:
            return None
        start, end = self._gram_offsets[position], self._gram_offsets[position + 1]
        return self._gram_data[start:end]

    def __len__(self) -> int:
        return len(self.records)

    def lookup(self, query: str) -> dict[int, Match]:
        """Best match per record for a lower-cased, stripped query."""
        found: dict[int, Match] = {}

        def add(match: Match) -> None:
            known = found.get(match.record)
            if known is None or _better(match, known):
                found[match.record] = match

        for i in self.key_records.get(query, ()):
            add(Match(i, "exact", query, 0.0))
        for key in self._prefix_keys(query):
            for i in self.key_records[key]:
                add(Match(i, "prefix", key, float(len(key) - len(query))))
        for i in self._word_hits(query):
            add(Match(i, "word", query, 0.0))
        for key, ratio in self._fuzzy_keys(query):
            for i in self.key_records[key]:
                add(Match(i, "fuzzy", key, ratio))
        return found

    def _prefix_keys(self, query: str) -> list[str]:
        lo = bisect.bisect_right(self.keys, query)
        hi = bisect.bisect_left(self.keys, query + "\U0010ffff", lo)
        if hi - lo <= PREFIX_KEYS:
            return self.keys[lo:hi]
        lengths = self.key_lengths[lo:hi]
        shortest = np.argpartition(lengths, PREFIX_KEYS)[:PREFIX_KEYS]
        return [self.keys[lo + int(j)] for j in np.sort(shortest)]

    def _word_hits(self, query: str) -> set[int]:
        tokens = words_of(query)
        if not tokens:
            return set()
        hits = set(self.word_records.get(tokens[0], ()))
        if len(tokens) > 1:
            # a multi-word query matches records that have every word (name, title, keywords)
            hits.update(self.key_records.get(tokens[0], ()))
            for token in tokens[1:]:
                more = set(self.word_records.get(token, ())) | set(self.key_records.get(token, ()))
                hits &= more
        return hits

    def _fuzzy_keys(self, query: str) -> list[tuple[str, float]]:
        if len(query) < 3 or not self.keys:
            return []
        grams = _bigrams(query)
        postings = [p for p in map(self.gram_postings, grams) if p is not None]
        if not postings:
            return []
        counts = np.bincount(np.concatenate(postings), minlength=len(self.keys))
        # keys sharing under a third of the query's bigrams cannot reach the ratio cutoff
        # in practice; the filter keeps rapidfuzz's work to a few thousand strings
        need = max(1, (len(grams) + 2) // 3)
        survivors = np.nonzero(counts >= need)[0]
        if len(survivors) > FUZZY_POOL:
            top = np.argpartition(-counts[survivors], FUZZY_POOL)[:FUZZY_POOL]
            survivors = np.sort(survivors[top])
        choices = [self.keys[int(i)] for i in survivors]
        scored = process.extract(
            query,
            choices,
            scorer=fuzz.ratio,
            limit=FUZZY_KEYS,
            score_cutoff=FUZZY_CUTOFF,
            processor=None,
        )
        return [(key, float(ratio)) for key, ratio, _ in scored if key != query]


def _better(new: Match, old: Match) -> bool:
    if TIER_ORDER[new.tier] != TIER_ORDER[old.tier]:
        return TIER_ORDER[new.tier] < TIER_ORDER[old.tier]
    if new.tier == "fuzzy":
        return new.quality > old.quality
    return new.quality < old.quality


# --- persistence ---------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(IndexFile)


def index_path(index_dir: Path, source_id: str) -> Path:
    return index_dir / f"{source_id}.msgpack"


def save_index(index_dir: Path, file: IndexFile) -> None:
    """Write atomically (tmp + fsync + rename): a crash leaves the old file or the new one."""
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_path(index_dir, file.source_id)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(_encoder.encode(file))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_index(index_dir: Path, source_id: str) -> IndexFile | None:
    path = index_path(index_dir, source_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    file = _decoder.decode(data)
    if file.format != INDEX_FORMAT:
        return None
    return file


def remove_index(index_dir: Path, source_id: str) -> None:
    index_path(index_dir, source_id).unlink(missing_ok=True)
