"""The in-memory index of one source's records, and its file under `STATE/index/`.

Memory and start-up time are what bound an index of ~200k records, so nothing here is one
Python object per record: records stay msgpack-encoded in one buffer (decoded only when
they match), postings are CSR arrays, and the file is those buffers as they are, so a
start-up reads it without rebuilding anything.

Lookups never scan every record: exact keys and prefixes are bisects over the sorted keys,
words a bisect over the sorted words, and fuzzy matching first narrows the keys by shared
bigrams (one vectorized `bincount`) before rapidfuzz scores the survivors. A source's index
is built in a worker thread and swapped in whole, so a search sees the old one or the new.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

from hoodyd.apps.catalog.records import AppRecord

Tier = Literal["exact", "prefix", "word", "fuzzy"]
TIER_ORDER: dict[Tier, int] = {"exact": 0, "prefix": 1, "word": 2, "fuzzy": 3}
INDEX_FORMAT = 2
PREFIX_KEYS = 150  # keys kept per prefix lookup: the shortest ones, the closest matches
FUZZY_KEYS = 100
FUZZY_CUTOFF = 70.0
FUZZY_POOL = 2000  # keys scored by rapidfuzz after the bigram filter
WORD_HITS = 200  # records kept per word lookup: installed applications first
# one byte of facts per record, so filters and first-pass scores need no decoding
FLAG_INSTALLED = 1
FLAG_AUXILIARY = 2
FLAG_GUI = 4
FLAG_OS_WINDOWS = 8
FLAG_OS_ANY = 16
FLAG_ARCH_AMD64 = 32
FLAG_ARCH_ARM64 = 64
FLAG_ARCH_OTHER = 128
_SPLIT = re.compile(r"[^0-9a-z]+")
_HIGHEST = "\U0010ffff"


class IndexFile(msgspec.Struct, array_like=True):
    """What `STATE/index/<source_id>.msgpack` holds. `*_offsets` are int64 and `*_data`
    int32 arrays (CSR): the postings of entry i are data[offsets[i]:offsets[i + 1]]."""

    format: int
    source_id: str
    source_type: str
    synced_at: float
    duration_ms: float
    details: dict[str, Any]
    records: bytes  # msgpack AppRecords, back to back
    record_offsets: bytes
    record_flags: bytes  # uint8 FLAG_* per record
    keys: list[str]  # sorted, unique, lower-case names, titles and binaries
    key_offsets: bytes
    key_data: bytes  # record positions
    words: list[str]  # sorted words of names, titles and keywords that are not keys
    word_offsets: bytes
    word_data: bytes  # record positions
    grams: list[str]  # sorted bigrams of the keys
    gram_offsets: bytes
    gram_data: bytes  # key positions


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


def record_flags(record: AppRecord) -> int:
    flags = FLAG_INSTALLED if record.installed else 0
    if record.auxiliary:
        flags |= FLAG_AUXILIARY
    if record.kind == "gui":
        flags |= FLAG_GUI
    if record.os == "windows":
        flags |= FLAG_OS_WINDOWS
    elif record.os == "any":
        flags |= FLAG_OS_ANY
    if record.arch == "amd64":
        flags |= FLAG_ARCH_AMD64
    elif record.arch == "arm64":
        flags |= FLAG_ARCH_ARM64
    elif record.arch != "any":
        flags |= FLAG_ARCH_OTHER
    return flags


def flags_allow(flags: int, kind: str | None, os: str | None, arch: str | None) -> bool:
    """The selector's kind/os/arch filters, on a record's flag byte."""
    if kind == "gui" and not flags & FLAG_GUI:
        return False
    if kind == "cli" and flags & FLAG_GUI:
        return False
    if os == "linux" and flags & (FLAG_OS_WINDOWS):
        return False
    if os == "windows" and not flags & (FLAG_OS_WINDOWS | FLAG_OS_ANY):
        return False
    if arch == "amd64" and flags & (FLAG_ARCH_ARM64 | FLAG_ARCH_OTHER):
        return False
    return not (arch == "arm64" and flags & (FLAG_ARCH_AMD64 | FLAG_ARCH_OTHER))


def _csr(groups: Iterable[list[int]]) -> tuple[bytes, bytes]:
    lists = list(groups)
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(g) for g in lists])
    data = np.fromiter((i for g in lists for i in g), dtype=np.int32, count=int(offsets[-1]))
    return offsets.tobytes(), data.tobytes()


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(AppRecord)


def build_index_file(
    *,
    source_id: str,
    source_type: str,
    synced_at: float,
    duration_ms: float,
    records: list[AppRecord],
    details: dict[str, Any],
) -> IndexFile:
    """Encode the records and build every lookup table (runs in a worker thread)."""
    blob = bytearray()
    record_offsets = np.zeros(len(records) + 1, dtype=np.int64)
    flags = bytearray(len(records))
    key_postings: dict[str, list[int]] = defaultdict(list)
    word_postings: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        blob += _record_encoder.encode(record)
        record_offsets[i + 1] = len(blob)
        flags[i] = record_flags(record)
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
    words_sorted = sorted(word_postings)
    grams_sorted = sorted(grams)
    key_offsets, key_data = _csr(key_postings[k] for k in keys_sorted)
    word_offsets, word_data = _csr(word_postings[w] for w in words_sorted)
    gram_offsets, gram_data = _csr(grams[g] for g in grams_sorted)
    return IndexFile(
        format=INDEX_FORMAT,
        source_id=source_id,
        source_type=source_type,
        synced_at=synced_at,
        duration_ms=duration_ms,
        details=details,
        records=bytes(blob),
        record_offsets=record_offsets.tobytes(),
        record_flags=bytes(flags),
        keys=keys_sorted,
        key_offsets=key_offsets,
        key_data=key_data,
        words=words_sorted,
        word_offsets=word_offsets,
        word_data=word_data,
        grams=grams_sorted,
        gram_offsets=gram_offsets,
        gram_data=gram_data,
    )


class _Postings:
    """Read-only CSR postings over buffers from the index file (no copies)."""

    def __init__(self, offsets: bytes, data: bytes) -> None:
        self.offsets = np.frombuffer(offsets, dtype=np.int64)
        self.data = np.frombuffer(data, dtype=np.int32)

    def __getitem__(self, position: int) -> npt.NDArray[np.int32]:
        return self.data[self.offsets[position] : self.offsets[position + 1]]

    def ints(self, position: int) -> list[int]:
        values: list[int] = self[position].tolist()
        return values


class SourceIndex:
    """Read-only lookup structures over one source's records."""

    def __init__(self, file: IndexFile) -> None:
        self.source_id = file.source_id
        self.source_type = file.source_type
        self.synced_at = file.synced_at
        self.duration_ms = file.duration_ms
        self.details = file.details
        self._records = memoryview(file.records)
        self._record_offsets = np.frombuffer(file.record_offsets, dtype=np.int64)
        self.flags = file.record_flags
        self._flags_array = np.frombuffer(file.record_flags, dtype=np.uint8)
        self.keys = file.keys
        self._key_records = _Postings(file.key_offsets, file.key_data)
        self.words = file.words
        self._word_records = _Postings(file.word_offsets, file.word_data)
        self._grams = {g: i for i, g in enumerate(file.grams)}
        self._gram_keys = _Postings(file.gram_offsets, file.gram_data)
        self.key_lengths: npt.NDArray[np.int32] = np.fromiter(
            (len(k) for k in self.keys), dtype=np.int32, count=len(self.keys)
        )

    def __len__(self) -> int:
        return len(self._record_offsets) - 1

    def record(self, position: int) -> AppRecord:
        start = int(self._record_offsets[position])
        end = int(self._record_offsets[position + 1])
        return _record_decoder.decode(self._records[start:end])

    def records(self) -> list[AppRecord]:
        return [self.record(i) for i in range(len(self))]

    def _key_position(self, key: str) -> int | None:
        position = bisect.bisect_left(self.keys, key)
        if position < len(self.keys) and self.keys[position] == key:
            return position
        return None

    def key_records(self, key: str) -> list[int]:
        position = self._key_position(key)
        return [] if position is None else self._key_records.ints(position)

    def word_records(self, word: str) -> list[int]:
        position = bisect.bisect_left(self.words, word)
        if position < len(self.words) and self.words[position] == word:
            return self._word_records.ints(position)
        return []

    def lookup(self, query: str, *, fuzzy: bool = True) -> dict[int, Match]:
        """Best match per record for a lower-cased, stripped query."""
        found: dict[int, Match] = {}

        def add(match: Match) -> None:
            known = found.get(match.record)
            if known is None or _better(match, known):
                found[match.record] = match

        for i in self.key_records(query):
            add(Match(i, "exact", query, 0.0))
        for position in self._prefix_positions(query):
            key = self.keys[position]
            for i in self._key_records.ints(position):
                add(Match(i, "prefix", key, float(len(key) - len(query))))
        for i in self._word_hits(query):
            add(Match(i, "word", query, 0.0))
        if fuzzy:
            self.add_fuzzy(query, found)
        return found

    def add_fuzzy(self, query: str, found: dict[int, Match]) -> None:
        """Add fuzzy matches of records that have no better match yet."""
        for position, ratio in self._fuzzy_positions(query):
            key = self.keys[position]
            for i in self._key_records.ints(position):
                known = found.get(i)
                if known is None or _better(Match(i, "fuzzy", key, ratio), known):
                    found[i] = Match(i, "fuzzy", key, ratio)

    def _prefix_positions(self, query: str) -> list[int]:
        lo = bisect.bisect_right(self.keys, query)
        hi = bisect.bisect_left(self.keys, query + _HIGHEST, lo)
        if hi - lo <= PREFIX_KEYS:
            return list(range(lo, hi))
        lengths = self.key_lengths[lo:hi]
        shortest = np.argpartition(lengths, PREFIX_KEYS)[:PREFIX_KEYS]
        positions: list[int] = (np.sort(shortest) + lo).tolist()
        return positions

    def _word_hits(self, query: str) -> set[int]:
        tokens = words_of(query)
        if not tokens:
            return set()
        hits = set(self.word_records(tokens[0]))
        if len(tokens) > 1:
            # a multi-word query matches records that have every word (name, title, keywords)
            hits.update(self.key_records(tokens[0]))
            for token in tokens[1:]:
                hits &= set(self.word_records(token)) | set(self.key_records(token))
        if len(hits) > WORD_HITS:
            # a common word ("python3", "lib") matches thousands: keep installed
            # applications first, then the rest in name order
            ordered = np.fromiter(sorted(hits), dtype=np.int64, count=len(hits))
            flags = self._flags_array[ordered]
            rank = ((flags & FLAG_INSTALLED) == 0).astype(np.int8) * 2 + (
                (flags & FLAG_AUXILIARY) != 0
            )
            kept: list[int] = ordered[np.argsort(rank, kind="stable")[:WORD_HITS]].tolist()
            hits = set(kept)
        return hits

    def _fuzzy_positions(self, query: str) -> list[tuple[int, float]]:
        if len(query) < 3 or not self.keys:
            return []
        grams = _bigrams(query)
        postings = [self._gram_keys[self._grams[g]] for g in grams if g in self._grams]
        if not postings:
            return []
        counts = np.bincount(np.concatenate(postings), minlength=len(self.keys))
        # a key one or two edits away still shares at least half of the query's bigrams;
        # the filter keeps rapidfuzz's work to a couple of thousand strings
        need = max(1, (len(grams) + 1) // 2)
        survivors = np.nonzero(counts >= need)[0]
        if len(survivors) > FUZZY_POOL:
            top = np.argpartition(-counts[survivors], FUZZY_POOL)[:FUZZY_POOL]
            survivors = np.sort(survivors[top])
        positions: list[int] = survivors.tolist()
        choices = [self.keys[i] for i in positions]
        scored = process.extract(
            query,
            choices,
            scorer=fuzz.ratio,
            limit=FUZZY_KEYS,
            score_cutoff=FUZZY_CUTOFF,
            processor=None,
        )
        return [(positions[at], float(ratio)) for key, ratio, at in scored if key != query]


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
