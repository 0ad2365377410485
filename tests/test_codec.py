"""The codec of stored state: exact round trips of every learner and of the engine's state, shared
references and cycles kept, and refusal — running nothing — of whatever does not verify or names
code off the allowlist."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pickle
import random
from collections import Counter, OrderedDict, defaultdict, deque
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import stats

from ares_stream import codec
from ares_stream.codec import (
    CALL,
    DDICT,
    DICT,
    GLOBAL,
    LIST,
    OBJ,
    PARTIAL,
    REF,
    CodecError,
    dumps,
    loads,
)
from ares_stream.engine import Engine
from ares_stream.events import BookTop
from ares_stream.learners.online import MODELS, OnlineLearner
from tests.test_engine import ListSink, config, trades

REGRESSORS = ("linreg", "hatr", "arfr")


def stream(n: int, seed: int, regression: bool) -> list[tuple[dict[str, float], float]]:
    """Five noisy features and a label that depends on two of them."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {f"f{j}": rng.gauss(0.0, 1.0) for j in range(5)}
        signal = x["f0"] - 0.5 * x["f1"] + rng.gauss(0.0, 1.0)
        out.append((x, signal if regression else float(signal > 0)))
    return out


@pytest.mark.parametrize("model", MODELS)
def test_each_learner_round_trips_and_learns_on_identically(model: str) -> None:
    """A trained learner, decoded, encodes to the same bytes, and learning the same samples
    after, stays identical: same predictions, drift reports and metrics. (Not the same bytes
    then: River seeds the Gaussians of each new tree node from the OS, in both learners.)"""
    regression = model in REGRESSORS
    data = stream(700, seed=3, regression=regression)
    learner = OnlineLearner(model, task="regression" if regression else "classification",
                            horizon=2, warm_samples=50, rolling_window=100)
    for x, y in data[:450]:
        learner.learn(x, y, learner.predict(x))
    blob = dumps(learner)
    twin = loads(blob)
    assert type(twin) is OnlineLearner and twin is not learner and dumps(twin) == blob
    for x, y in data[450:]:
        p, q = learner.predict(x), twin.predict(x)
        assert p == q
        assert learner.learn(x, y, p) == twin.learn(x, y, q)
    assert learner.metrics() == twin.metrics() and learner.n_learned == twin.n_learned
    assert learner.n_drifts == twin.n_drifts


def test_engine_state_round_trips_and_the_engine_continues_identically() -> None:
    """Bar builders (with their last book top), features, labels and learner of a running
    engine, decoded into a fresh engine, make the same predictions and outcomes on the trades
    and book tops that follow."""
    tape: list[Any] = []
    for t in trades(1500):
        tape.append(t)
        if t.trade_id % 5 == 0:
            tape.append(BookTop(t.symbol, t.ts_event, t.ts_init, t.trade_id, t.price - 0.05,
                                1.0 + t.trade_id % 3, t.price + 0.05, 2.0))
    first = Engine(config(), ListSink())
    for ev in tape[:800]:
        first.on_event(ev)
    after, second = ListSink(), Engine(config(), ListSink())
    second.state = loads(dumps(first.state))  # as the daemon restores a checkpoint
    assert second.state["BTCUSDT"].builder._book == first.state["BTCUSDT"].builder._book
    assert type(second.state["BTCUSDT"].builder._book) is BookTop
    second.counts.update(first.counts)
    second.last_ts = first.last_ts
    first.sink = after
    for ev in tape[800:]:
        first.on_event(ev)
        second.on_event(ev)
    assert after.predictions, "the engine predicts after the split"
    assert after.predictions == second.sink.predictions and after.outcomes == second.sink.outcomes
    assert dumps(first.state) == dumps(second.state)


def test_shared_references_cycles_and_builtins_come_back_as_they_were() -> None:
    """Sharing and cycles are kept; containers keep their type, maxlen, factory and order;
    floats keep nan, inf and -0.0; ints beyond 64 bits, bytes and numpy data are exact."""
    shared, mean = [1.0, 2.0], stats.Mean()
    mean.update(3.0)
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    rng = random.Random(5)
    rng.random()
    grid = np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4))
    obj = {
        "a": shared, "b": shared, "m1": mean, "m2": mean, "loop": loop, (1, "k"): frozenset({2}),
        3.5: deque([1, 2, 3], maxlen=4), "dd": defaultdict(list, {"x": [1]}),
        "od": OrderedDict([("z", 1), ("a", 2)]), "c": Counter("abca"), "s": {1, 2},
        "floats": [math.nan, math.inf, -math.inf, -0.0], "ints": [2**64, -(2**80), 2**63 - 1],
        "raw": b"\x00\xff", "buf": bytearray(b"ab"), "z": 1 + 2j, "rng": rng, "grid": grid,
        "np": [np.float64(0.1), np.int64(-3), np.bool_(True)], "dtype": np.dtype("<f4"),
        "types": [int, float, list, dict, set, str],
    }
    back = loads(dumps(obj))
    assert back["a"] is back["b"] and back["m1"] is back["m2"] and back["a"] == [1.0, 2.0]
    assert back["loop"]["self"] is back["loop"]
    assert back["m1"].get() == 3.0 and type(back["m1"]) is stats.Mean
    assert back[(1, "k")] == frozenset({2})
    assert back[3.5].maxlen == 4 and list(back[3.5]) == [1, 2, 3]
    assert back["dd"].default_factory is list and back["dd"]["new"] == []
    assert list(back["od"]) == ["z", "a"] and type(back["od"]) is OrderedDict
    assert back["c"] == Counter("abca") and type(back["c"]) is Counter
    f = back["floats"]
    assert math.isnan(f[0]) and f[1:3] == [math.inf, -math.inf]
    assert math.copysign(1.0, f[3]) == -1.0
    assert back["ints"] == obj["ints"] and back["raw"] == b"\x00\xff"
    assert back["buf"] == bytearray(b"ab") and back["z"] == 1 + 2j
    assert back["rng"].random() == rng.random()
    assert back["grid"].flags.f_contiguous and np.array_equal(back["grid"], grid)
    assert back["grid"].dtype == np.int32 and back["grid"].flags.writeable
    assert [type(v) for v in back["np"]] == [np.float64, np.int64, np.bool_]
    assert back["np"] == obj["np"] and back["dtype"] == np.dtype("<f4")
    assert back["types"] == [int, float, list, dict, set, str]


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.integers() | st.text() | st.tuples(st.integers()), inner, max_size=4),
    max_leaves=20)


@given(plain)
@settings(max_examples=200, deadline=None)
def test_plain_data_round_trips_exactly(value: Any) -> None:
    """Any tree of builtins comes back equal and of the same types."""
    back = loads(dumps(value))
    assert back == value and repr(back) == repr(value)


# --- refusals -------------------------------------------------------------------------------


def craft(tree: Any, version: int = codec.VERSION) -> bytes:
    """A payload with a valid envelope and checksum around ``tree``: what an attacker who can
    write the database could store (the checksum is no signature)."""
    payload = msgspec.msgpack.encode(tree)
    return msgspec.msgpack.encode(
        [codec.FORMAT, version, hashlib.sha256(payload).digest(), payload])


def touch(marker: Path) -> str:
    return f"touch {marker}"


def evil_trees(marker: Path) -> dict[str, Any]:
    cmd = touch(marker)
    return {
        "os.system": [OBJ, [GLOBAL, "os", "system"], [cmd]],
        "builtins.eval": [OBJ, [GLOBAL, "builtins", "eval"], [f"__import__('os').system('{cmd}')"]],
        "subprocess.Popen": [CALL, [GLOBAL, "subprocess", "Popen"], [["touch", str(marker)]]],
        "posix.system": [LIST, [GLOBAL, "posix", "system"]],
        "a class off the allowlist": [OBJ, [GLOBAL, "ares_stream.store.db", "StoreError"], []],
        "a stdlib class by name": [OBJ, [GLOBAL, "collections", "UserDict"], []],
        "a function as the constructor": [OBJ, [GLOBAL, "river.utils.math", "sigmoid"], [0.0]],
        "a class called with arguments": [CALL, [GLOBAL, "river.stats.mean", "Mean"], []],
        "eval through an allowlisted module": [GLOBAL, "ares_stream.learners.registry",
                                               "builtins.eval"],
        "a method": [GLOBAL, "river.stats.mean", "Mean.update"],
        "os.system in a factory": [DDICT, [PARTIAL, [GLOBAL, "os", "system"], [cmd], [DICT]]],
        "a dunder attribute": [OBJ, [GLOBAL, "river.stats.mean", "Mean"], [],
                               [DICT, "__reduce_ex__", [PARTIAL, [GLOBAL, "builtins", "int"],
                                                        [], [DICT]]]],
        "River's file streams": [GLOBAL, "river.stream.iter_csv", "iter_csv"],
        "an object dtype": [codec.NDARRAY, "|O", [1], "C", b"\0" * 8],
        "a reference ahead": [LIST, [REF, 5]],
        "a Rust state that does not parse": [
            OBJ, [GLOBAL, "river._river_rust.drift", "AdaptiveWindowing"], [0.002, 32, 5, 5, 10],
            b"garbage"],
    }


@pytest.mark.parametrize("what", list(evil_trees(Path("x"))))
def test_a_payload_naming_code_is_refused_and_runs_nothing(what: str, tmp_path: Path) -> None:
    """A verified envelope whose tree names os.system, builtins.eval, subprocess.Popen,
    posix.system, a class off the allowlist, a function where a class belongs … is a
    CodecError, and the command it carries never runs."""
    marker = tmp_path / "ran"
    with pytest.raises(CodecError, match=r"^(refused|malformed)"):
        loads(craft(evil_trees(marker)[what]))
    assert not marker.exists()


class Exploit:
    """Pickles to ``os.system("touch …")``: what the old loader would have run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (touch(self.marker),)


def test_a_pickle_is_refused_unread(tmp_path: Path) -> None:
    """A pickle (the old format) is refused by its header, never unpickled."""
    marker = tmp_path / "ran"
    with pytest.raises(CodecError, match=r"a pickle .*refused, a pickle can run code"):
        loads(pickle.dumps(Exploit(marker)))
    assert not marker.exists()


def test_a_flipped_byte_fails_the_checksum() -> None:
    """One bit changed in the payload is a checksum mismatch."""
    blob = bytearray(dumps({"w": [1.0, 2.0, 3.0]}))
    blob[-2] ^= 0x01
    with pytest.raises(CodecError, match="checksum mismatch"):
        loads(bytes(blob))


def test_truncated_garbage_and_other_versions_are_refused_clearly() -> None:
    """A cut-off payload, bytes that are not the format, another format name or version: each
    a CodecError saying which."""
    blob = dumps(list(range(100)))
    with pytest.raises(CodecError, match="truncated"):
        loads(blob[:-10])
    for junk in (b"", b"hello", b"\x93\x01\x02\x03"):
        with pytest.raises(CodecError, match="not an ares-codec payload"):
            loads(junk)
    with pytest.raises(CodecError, match="version 2 cannot be read: this build reads version 1"):
        loads(craft([LIST], version=2))
    other = msgspec.msgpack.encode(["other", 1, hashlib.sha256(b"\x90").digest(), b"\x90"])
    with pytest.raises(CodecError, match="its format is 'other'"):
        loads(other)


trees = st.recursive(
    st.none() | st.integers(-3, 25) | st.text(max_size=8) | st.binary(max_size=8)
    | st.sampled_from(["river.stats.mean", "Mean", "os", "system", "builtins"]),
    lambda inner: st.lists(inner, max_size=6), max_leaves=30)


@given(trees)
@settings(max_examples=300, deadline=None)
def test_any_verified_tree_decodes_or_is_a_codec_error(tree: Any) -> None:
    """Whatever tree a verified envelope holds, decoding returns or raises CodecError: nothing
    else escapes."""
    with contextlib.suppress(CodecError):
        loads(craft(tree))


def test_encoding_names_the_type_and_path_it_cannot_store() -> None:
    """What decoding would refuse is refused when writing, naming its type and where it is."""
    with pytest.raises(CodecError, match=r"encode .*<lambda> at \['a'\]\[1\]\['f'\]: not on"):
        dumps({"a": [0, {"f": lambda: 0}]})
    learner = OnlineLearner("logreg")
    learner.where = Path("/tmp")  # type: ignore[attr-defined]
    with pytest.raises(CodecError, match=r"cannot encode pathlib.PosixPath at .where: not on"):
        dumps(learner)
    with pytest.raises(CodecError, match="object"):
        dumps(np.array([object()]))
