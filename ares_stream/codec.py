"""A safe object-graph codec for stored state: msgpack of a tagged tree, never pickle.

Checkpoints (the engine's learners, features, labels, bar builders) and River learners in the
model registry are stored with :func:`dumps` and read with :func:`loads`. Nothing read from a
file or a database may run code, so this codec replaces pickle there.

**The format.** ``dumps`` writes a msgpack array ``["ares-codec", 1, sha256, payload]``; the
payload is the msgpack of a tree of plain values (None, bool, int, float, str, bytes) and tagged
arrays ``[tag, ...]`` for everything else: containers, numpy arrays and scalars, references to
classes and functions by qualified name, and objects as *class + state* (what
``__reduce_ex__(4)`` gives: ``copyreg.__newobj__`` with the class, its ``__dict__`` and slots, or
the state its ``__getstate__`` returns). Each container or object met twice is written once and
then referred to by number, so shared references and cycles come back as they were. ``loads``
refuses, with :class:`CodecError` naming what failed, anything that is not this format, another
version, a payload whose checksum does not match, and any tree that does not decode. The
checksum catches corruption; it is no signature (whoever can write the database can recompute
it): safety comes from what decoding is allowed to do.

**What decoding may execute**, and nothing else:

- *resolve* a class or function by module and qualified name, for modules under
  :data:`MODULES` (River, and ares-stream's ``events``, ``features``, ``learners`` and
  ``engine``: where the engine state's classes live) but not under :data:`EXCLUDED` (River's
  datasets, file streams, evaluation and test code), and for the fixed stdlib names of
  :data:`GLOBALS`. The module is imported if it is not yet (installed code the process trusts
  anyway; never a test module or a ``__dunder__`` one such as ``__main__``). Names are read from
  the module's and classes' ``__dict__`` (no ``__getattr__`` hook runs), a name inside a class
  must be a nested class or a staticmethod (a method needs an instance: refused), and what is
  found must be that very class or function (its own ``__module__`` and ``__qualname__``), so
  no name reaches ``os.system``, ``subprocess.Popen`` or ``builtins.eval``, not even through a
  module that imported them;
- *instantiate* only classes so resolved (:data:`STDLIB_CLASSES` aside, never a stdlib class
  by name), by ``cls.__new__(cls, *args)`` where ``__new__`` is ``object.__new__`` or a builtin
  container's, or ``cls`` is one of River's Rust types in :data:`NEW_WITH_ARGS`; or by calling
  a constructor of :data:`CALLS` (River's ``VectorDict``) after checking its arguments' types,
  or of a ``msgspec.Struct`` (our frozen events: msgspec's constructor assigns the fields) with
  exactly its fields. Then the class's own ``__setstate__`` runs (allowlisted code: River's,
  ours; River's Rust types parse their bytes with serde, and a panic is caught) or, without
  one, pickle's default: fill ``__dict__`` and the declared slots. State naming a
  ``__dunder__`` attribute is refused (an instance attribute such as ``__getstate__`` would be
  called by the next encode);
- *rebuild* builtins, ``collections.deque/OrderedDict/Counter/defaultdict``,
  ``random.Random`` (``setstate``), ``functools.partial`` (built, never called) and numpy
  arrays and scalars of bool, integer, float and complex dtypes with ``np.frombuffer`` (never
  numpy's pickle path, never an object dtype); a container's ``append``/``add``/
  ``__setitem__`` and the hashing of keys run as they do in pickle.

No resolved function, class or partial is ever called by decoding except as above: a
``defaultdict``'s factory or a River node's dispatch function comes back as a reference. So the
code that runs is the stdlib's container code, River's and ours, chosen among by data that
cannot name anything else. Encoding refuses what it could not read back, naming the type and
where it sits in the object graph.

>>> from collections import deque
>>> from river import drift
>>> shared = [1.5, float("inf")]
>>> state = {"a": shared, "b": shared, 3: deque([1, 2], maxlen=5), "big": 2**80}
>>> back = loads(dumps(state))
>>> back == state, back["a"] is back["b"], back[3].maxlen
(True, True, 5)
>>> det = drift.ADWIN()
>>> for x in [0.0] * 200 + [1.0] * 200:
...     _ = det.update(x)
>>> twin = loads(dumps(det))
>>> twin.drift_detected == det.drift_detected, twin.width == det.width
(True, True)
>>> import os
>>> dumps({"f": os.system})
Traceback (most recent call last):
ares_stream.codec.CodecError: cannot encode posix.system at ['f']: not on the codec's allowlist
>>> loads(b"\\x80\\x04junk")  # doctest: +ELLIPSIS
Traceback (most recent call last):
ares_stream.codec.CodecError: not an ares-codec payload but a pickle (...): refused, ... run code...
"""

from __future__ import annotations

import copyreg
import functools
import hashlib
import importlib
import random
import re
import sys
import types
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import numpy as np

from ares_stream.errors import AresError

__all__ = ["FORMAT", "VERSION", "CodecError", "dumps", "loads"]

FORMAT = "ares-codec"
VERSION = 1

MODULES = ("river", "ares_stream.events", "ares_stream.features", "ares_stream.learners",
           "ares_stream.engine")
# River's file, network and test code: no model state lives there
EXCLUDED = ("river.datasets", "river.bandit.datasets", "river.stream", "river.evaluate",
            "river.checks", "river.api", "river.compat")
GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [("builtins", n) for n in ("int", "float", "list", "dict", "set", "str", "tuple", "bool",
                               "frozenset")]
    + [("collections", n) for n in ("Counter", "OrderedDict", "defaultdict", "deque")]
    + [("statistics", "NormalDist")])
STDLIB_CLASSES = frozenset({("statistics", "NormalDist")})  # stdlib objects found in River models
_NO_PARTS = ("conftest", "tests", "test")

# tags of the tree's arrays
(REF, LIST, TUPLE, DICT, SET, FROZENSET, DEQUE, ODICT, COUNTER, DDICT, BIGINT, BYTEARRAY,
 GLOBAL, PARTIAL, RANDOM, NDARRAY, NPSCALAR, DTYPE, OBJ, CALL, COMPLEX) = range(21)
_INT64, _UINT64 = -(2**63), 2**64
_NEWOBJ = getattr(copyreg, "__newobj__")  # noqa: B009 - not in typeshed's copyreg
_PLAIN = frozenset({str, float, int, bool, bytes, type(None)})
_NUMERIC = frozenset("biufc")


class CodecError(AresError):
    """Stored state that does not verify — not this format, another version, a bad checksum, a
    malformed tree, a name off the allowlist — or an object that cannot be encoded; the message
    says which."""


class _Envelope(msgspec.Struct, array_like=True, frozen=True):
    format: str
    version: int
    sha256: bytes
    payload: bytes


class _Refused(Exception):
    """Raised inside encode/decode; carries the path in the object graph, innermost last."""

    def __init__(self, reason: str, subject: str = "") -> None:
        super().__init__(reason)
        self.reason, self.subject = reason, subject
        self.path: list[str] = []

    def at(self, step: str) -> _Refused:
        self.path.append(step)
        return self

    def where(self) -> str:
        """``['state']['BTCUSDT'].learner._estimator[0]``: an object's attributes as ``.name``."""
        path = "".join(reversed(self.path))
        return re.sub(r"<\w+>(?:\[1\])?\['(\w+)'\]", r".\1", path) or "the top"


def dumps(obj: Any) -> bytes:
    """The codec's bytes of ``obj``; :class:`CodecError` names what cannot be encoded, and where.

    >>> loads(dumps((1, "a", None, b"x", {1.0, 2.0})))
    (1, 'a', None, b'x', {1.0, 2.0})
    """
    try:
        payload = msgspec.msgpack.encode(_Encoder().enc(obj))
    except _Refused as exc:
        raise CodecError(f"cannot encode {exc.subject} at {exc.where()}: {exc.reason}") from None
    except RecursionError:
        raise CodecError("cannot encode: the object graph is nested too deeply") from None
    digest = hashlib.sha256(payload).digest()
    return msgspec.msgpack.encode(_Envelope(FORMAT, VERSION, digest, payload))


def loads(data: bytes) -> Any:
    """The object :func:`dumps` wrote; :class:`CodecError` when ``data`` does not verify.

    >>> blob = bytearray(dumps([1, 2, 3]))
    >>> blob[-1] ^= 1
    >>> loads(bytes(blob))
    Traceback (most recent call last):
    ares_stream.codec.CodecError: checksum mismatch: the payload is corrupt or was altered
    """
    payload = _open(data)
    try:
        tree = msgspec.msgpack.decode(payload)
        return _Decoder().dec(tree)
    except _Refused as exc:
        raise CodecError(f"refused: {exc.subject}{': ' if exc.subject else ''}{exc.reason}") \
            from None
    except (msgspec.DecodeError, IndexError, TypeError, ValueError, KeyError, AttributeError,
            OverflowError, RecursionError, ImportError) as exc:
        raise CodecError(f"malformed ares-codec payload: {type(exc).__name__}: {exc}") from None


def _open(data: bytes) -> bytes:
    """The verified payload inside the envelope."""
    head = bytes(data[:1])
    if head == b"\x80":
        raise CodecError(f"not an {FORMAT} payload but a pickle (an earlier version's format): "
                         "refused, a pickle can run code when loaded")
    try:
        env = msgspec.msgpack.decode(data, type=_Envelope)
    except msgspec.DecodeError as exc:
        raise CodecError(f"not an {FORMAT} payload (or truncated): {exc}") from None
    if env.format != FORMAT:
        raise CodecError(f"not an {FORMAT} payload: its format is {env.format!r}")
    if env.version != VERSION:
        raise CodecError(f"{FORMAT} version {env.version} cannot be read: this build reads "
                         f"version {VERSION}")
    if hashlib.sha256(env.payload).digest() != env.sha256:
        raise CodecError("checksum mismatch: the payload is corrupt or was altered")
    return env.payload


# -- what may be named ------------------------------------------------------------------------


def _allowed_module(module: str) -> bool:
    """Under :data:`MODULES`, not under :data:`EXCLUDED`; no test module, no ``__main__`` or
    other ``__dunder__`` module (``river.__init__`` would run River's ``__init__`` again)."""
    if any(p in _NO_PARTS or p.startswith(("test_", "__")) for p in module.split(".")):
        return False
    return _under(module, MODULES) and not _under(module, EXCLUDED)


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in prefixes)


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _resolve(module: Any, qualname: Any) -> Any:
    """The class or function ``module.qualname`` from the allowlist, looked up without hooks."""
    if type(module) is not str or type(qualname) is not str:
        raise _Refused("a class or function name that is not a string")
    if (module, qualname) not in GLOBALS and not _allowed_module(module):
        raise _Refused(f"{module}.{qualname} is not on the codec's allowlist")
    found: Any = sys.modules.get(module) or importlib.import_module(module)
    top = found
    for part in qualname.split("."):
        if found is not top and not isinstance(found, type):
            raise _Refused(f"{module}.{qualname} is not a module-level class or function")
        owner, found = found, vars(found).get(part)
        if isinstance(found, staticmethod):  # a class's function, kept as a plain callable
            found = found.__func__
        elif owner is not top and not isinstance(found, type):  # a method needs its instance
            raise _Refused(f"{module}.{qualname} is a method, not a class or function")
    if not _is_global(found) or (found.__module__, found.__qualname__) != (module, qualname):
        raise _Refused(f"{module}.{qualname} does not name an allowlisted class or function")
    return found


def _is_global(obj: Any) -> bool:
    return isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType)


def _is_factory(obj: Any) -> bool:
    """A value that may stand where a callable is kept (a factory): a global or a partial."""
    return obj is None or _is_global(obj) or type(obj) is functools.partial


def _check_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    if dtype.kind not in _NUMERIC or dtype.hasobject or dtype.fields is not None \
            or dtype.subdtype is not None:
        raise _Refused(f"numpy dtype {dtype.str!r} (only bool, integer, float, complex)")
    return dtype


_VECTORDICT = ("river._river_rust.vectordict", "VectorDict")


def _qual(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


def _check_vectordict(args: tuple[Any, ...]) -> None:
    data, factory, mask, copy = args
    if type(data) is not dict or not _is_factory(factory) or type(copy) is not bool \
            or (mask is not None and _qual(type(mask)) != _VECTORDICT):
        raise _Refused("VectorDict arguments of the wrong types")


# by name (module, qualname), so this module never imports River; the classes compared are the
# ones _resolve found, whose own names were checked. Constructors called with their (checked)
# reduce arguments; extension types built by __new__ with arguments, then __setstate__.
CALLS: dict[tuple[str, str], Callable[[tuple[Any, ...]], None]] = {
    _VECTORDICT: _check_vectordict}
NEW_WITH_ARGS = frozenset({("river._river_rust.drift", "AdaptiveWindowing")})


def _call_check(cls: type) -> Callable[[tuple[Any, ...]], None] | None:
    """The argument check of a class decoding may call: one of :data:`CALLS`, or a
    ``msgspec.Struct`` (our frozen events), whose constructor only assigns its fields."""
    if issubclass(cls, msgspec.Struct):
        return functools.partial(_check_struct, cls)
    return CALLS.get(_qual(cls))


def _check_struct(cls: type, args: tuple[Any, ...]) -> None:
    if len(args) != len(getattr(cls, "__struct_fields__", ())):
        raise _Refused(f"{_name(cls)} given {len(args)} fields")


_BUILTIN_NEW = frozenset(t.__new__ for t in (object, dict, list, set))


def _allowed_class(cls: type) -> bool:
    """May ``cls`` be instantiated: a class of the allowlisted modules or of STDLIB_CLASSES."""
    known = _CLASSES.get(cls)
    if known is None:
        known = _qual(cls) in STDLIB_CLASSES or (
            _allowed_module(cls.__module__) and "<locals>" not in cls.__qualname__)
        _CLASSES[cls] = known
    return known


_CLASSES: dict[type, bool] = {}  # the answers of _allowed_class, per class


class _Encoder:
    """Object -> tree. ``memo`` numbers each container or object in the order the decoder will
    build it; ``keep`` holds the temporaries ``__reduce_ex__`` made so their ids stay unique."""

    def __init__(self) -> None:
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []
        self.alive: list[Any] = []  # what __reduce_ex__ returned: its temporaries keep their ids
        self.busy: set[int] = set()

    def remember(self, obj: Any) -> None:
        self.memo[id(obj)] = len(self.keep)
        self.keep.append(obj)

    def enc(self, obj: Any) -> Any:  # the hot path: plain values first
        t = type(obj)
        if t is float or t is str or t is bool or obj is None or t is bytes:
            return obj
        if t is int:
            return obj if _INT64 <= obj < _UINT64 else [BIGINT, _int_bytes(obj)]
        ref = self.memo.get(id(obj))
        if ref is not None:
            return [REF, ref]
        handler = _ENCODERS.get(t)
        return handler(self, obj) if handler is not None else self.other(obj)

    def items(self, tag: int, obj: Any, head: list[Any] | None = None) -> list[Any]:
        self.remember(obj)
        out = [tag, *(head or ())]
        try:
            for v in obj:
                out.append(self.enc(v))
        except _Refused as exc:
            raise exc.at(f"[{len(out) - 1 - len(head or ())}]") from None
        return out

    def pairs(self, tag: int, obj: Any, head: list[Any] | None = None) -> list[Any]:
        self.remember(obj)
        out = [tag, *(head or ())]
        k: Any = None
        try:
            for k, v in obj.items():
                out.append(self.enc(k))
                out.append(self.enc(v))
        except _Refused as exc:
            raise exc.at(f"[{k!r}]") from None
        return out

    def frozen(self, tag: int, obj: Any) -> list[Any]:
        """A tuple or frozenset: numbered after its items, as the decoder builds it after them."""
        if id(obj) in self.busy:
            raise _Refused("a cycle through it is not supported", type(obj).__name__)
        self.busy.add(id(obj))
        out = [tag]
        try:
            for v in obj:
                out.append(self.enc(v))
        except _Refused as exc:
            raise exc.at(f"[{len(out) - 1}]") from None
        finally:
            self.busy.discard(id(obj))
        self.remember(obj)
        return out

    def other(self, obj: Any) -> Any:
        if isinstance(obj, np.generic):
            dtype = _dtype_or_refuse(obj.dtype, obj)
            return [NPSCALAR, dtype.str, obj.tobytes()]
        if isinstance(obj, np.dtype):
            return [DTYPE, _dtype_or_refuse(obj, obj).str]
        if _is_global(obj):
            return self.glob(obj)
        return self.reduced(obj)

    def glob(self, obj: Any) -> list[Any]:
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        try:
            if _resolve(module, qualname) is not obj:
                raise _Refused("")
        except (_Refused, ImportError):
            raise _Refused("not on the codec's allowlist", _name(obj)) from None
        self.remember(obj)
        return [GLOBAL, module, qualname]

    def reduced(self, obj: Any) -> list[Any]:
        cls = type(obj)
        if not _allowed_class(cls):
            raise _Refused("not on the codec's allowlist", _name(cls))
        try:
            rv = _reduce_ex_of(cls)(obj, 4)
        except (TypeError, ValueError, AttributeError) as exc:
            raise _Refused(f"it cannot be reduced ({exc})", _name(cls)) from None
        if not isinstance(rv, tuple) or not 2 <= len(rv) <= 5:
            raise _Refused("its reduction is not supported", _name(cls))
        self.alive.append(rv)
        func, args, state, listitems, dictitems = (*rv, None, None, None)[:5]
        if func is _NEWOBJ and args and args[0] is cls:
            tag, args = OBJ, args[1:]
        elif func is cls and _call_check(cls) is not None:
            tag = CALL
        else:
            raise _Refused(f"it reduces to {_name(func)}, which is not supported", _name(cls))
        return self.obj(tag, obj, args, state, listitems, dictitems)

    def obj(self, tag: int, obj: Any, args: tuple[Any, ...], state: Any, listitems: Any,
            dictitems: Any) -> list[Any]:
        name = f"<{type(obj).__name__}>"
        try:
            head = [tag, self.enc(type(obj)), [self.enc(a) for a in args]]
            self.remember(obj)
            out = [*head, self.enc(state)]
            if listitems is not None or dictitems is not None:
                out.append(None if listitems is None else [self.enc(v) for v in listitems])
            if dictitems is not None:
                out.append([self.enc(x) for kv in dictitems for x in kv])
        except _Refused as exc:
            raise exc.at(name) from None
        return out


def _reduce_ex_of(cls: type) -> Callable[[Any, int], Any]:
    """``cls.__reduce_ex__``, looked up on the class: an instance attribute cannot stand in."""
    return cls.__reduce_ex__  # type: ignore[return-value]


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)


def _dtype_or_refuse(dtype: np.dtype[Any], obj: Any) -> np.dtype[Any]:
    try:
        return _check_dtype(dtype)
    except _Refused:
        raise _Refused(f"dtype {dtype}: only bool, integer, float and complex numpy data are "
                       "stored", _name(type(obj))) from None


def _ndarray(e: _Encoder, a: np.ndarray[Any, Any]) -> list[Any]:
    dtype = _dtype_or_refuse(a.dtype, a)
    order: Literal["C", "F"] = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    e.remember(a)
    return [NDARRAY, dtype.str, list(a.shape), order, a.tobytes(order=order)]


def _bytearray(e: _Encoder, b: bytearray) -> list[Any]:
    e.remember(b)
    return [BYTEARRAY, bytes(b)]


def _partial(e: _Encoder, p: functools.partial[Any]) -> list[Any]:
    if p.__dict__:
        raise _Refused("attributes on a partial are not supported", "functools.partial")
    out = [PARTIAL, e.enc(p.func), [e.enc(a) for a in p.args], e.enc(dict(p.keywords))]
    e.remember(p)
    return out


def _random(e: _Encoder, r: random.Random) -> list[Any]:
    version, internal, gauss = r.getstate()
    e.remember(r)
    return [RANDOM, version, list(internal), gauss]


_ENCODERS: dict[type, Callable[[_Encoder, Any], Any]] = {
    list: lambda e, o: e.items(LIST, o),
    tuple: lambda e, o: e.frozen(TUPLE, o),
    dict: lambda e, o: e.pairs(DICT, o),
    set: lambda e, o: e.items(SET, o),
    frozenset: lambda e, o: e.frozen(FROZENSET, o),
    deque: lambda e, o: e.items(DEQUE, o, [o.maxlen]),
    OrderedDict: lambda e, o: e.pairs(ODICT, o),
    Counter: lambda e, o: e.pairs(COUNTER, o),
    defaultdict: lambda e, o: e.pairs(DDICT, o, [e.enc(o.default_factory)]),
    bytearray: _bytearray,
    complex: lambda e, o: [COMPLEX, o.real, o.imag],
    functools.partial: _partial,
    random.Random: _random,
    np.ndarray: _ndarray,
}


class _Decoder:
    """Tree -> object; ``objs`` holds every numbered container or object in build order."""

    def __init__(self) -> None:
        self.objs: list[Any] = []

    def dec(self, node: Any) -> Any:
        if type(node) is not list:
            if type(node) in _PLAIN:
                return node
            raise _Refused(f"a {type(node).__name__} in the tree")  # a msgpack map, ext type
        tag = node[0]
        if type(tag) is not int or tag < 0:
            raise _Refused(f"a node tagged {tag!r}")
        return _DECODERS[tag](self, node)

    def new(self, obj: Any) -> Any:
        self.objs.append(obj)
        return obj

    def fill(self, obj: Any, nodes: list[Any], add: Callable[[Any, Any], Any]) -> Any:
        self.new(obj)
        dec = self.dec
        for n in nodes:
            add(obj, dec(n))
        return obj

    def fill_pairs(self, obj: Any, nodes: list[Any]) -> Any:
        self.new(obj)
        self.fill_pairs_into(obj, nodes)
        return obj

    def ref(self, node: list[Any]) -> Any:
        n = node[1]
        if type(n) is not int or not 0 <= n < len(self.objs):
            raise _Refused(f"a reference to object {n!r}, not built (yet)")
        return self.objs[n]

    def factory(self, node: Any) -> Any:
        f = self.dec(node)
        if not _is_factory(f):
            raise _Refused(f"a {type(f).__name__} where a class or function belongs")
        return f

    def deque_(self, node: list[Any]) -> deque[Any]:
        maxlen = node[1]
        if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
            raise _Refused(f"a deque maxlen of {maxlen!r}")
        return self.fill(deque(maxlen=maxlen), node[2:], deque.append)

    def ddict(self, node: list[Any]) -> defaultdict[Any, Any]:
        return self.fill_pairs(defaultdict(self.factory(node[1])), node[2:])

    def frozen(self, node: list[Any], kind: type) -> Any:
        return self.new(kind(self.dec(n) for n in node[1:]))

    def glob(self, node: list[Any]) -> Any:
        return self.new(_resolve(node[1], node[2]))

    def partial(self, node: list[Any]) -> functools.partial[Any]:
        func = self.factory(node[1])
        if func is None:
            raise _Refused("a functools.partial of None")
        args, kwargs = [self.dec(n) for n in node[2]], self.dec(node[3])
        if type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
            raise _Refused("functools.partial keywords that are not a str-keyed dict")
        return self.new(functools.partial(func, *args, **kwargs))

    def random_(self, node: list[Any]) -> random.Random:
        r = random.Random.__new__(random.Random)
        r.setstate((node[1], tuple(node[2]), node[3]))
        return self.new(r)

    def ndarray(self, node: list[Any]) -> np.ndarray[Any, Any]:
        dtype = _check_dtype(np.dtype(_dtype_name(node[1])))
        shape, order, raw = node[2], node[3], node[4]
        if order not in ("C", "F") or type(raw) is not bytes \
                or not all(type(n) is int and n >= 0 for n in shape):
            raise _Refused("a numpy array of the wrong shape")
        flat = np.frombuffer(raw, dtype=dtype)
        return self.new(flat.reshape(shape, order=order).copy(order=order))

    def npscalar(self, node: list[Any]) -> Any:
        dtype = _check_dtype(np.dtype(_dtype_name(node[1])))
        raw = node[2]
        if type(raw) is not bytes or len(raw) != dtype.itemsize:
            raise _Refused("a numpy scalar of the wrong size")
        return np.frombuffer(raw, dtype=dtype)[0]

    def obj(self, node: list[Any]) -> Any:
        cls = self.dec(node[1])
        if not isinstance(cls, type) or not _allowed_class(cls):
            raise _Refused(f"{_name(cls)} is not an allowlisted class")
        if type(node[2]) is not list:
            raise _Refused(f"{_name(cls)} arguments that are not a list")
        args = tuple(self.dec(n) for n in node[2])
        if node[0] == CALL:
            check = _call_check(cls)
            if check is None:
                raise _Refused(f"{_name(cls)} may not be called")
            check(args)
            obj = cls(*args)
        else:
            if cls.__new__ not in _BUILTIN_NEW and _qual(cls) not in NEW_WITH_ARGS:
                raise _Refused(f"{_name(cls)} has its own __new__")
            obj = cls.__new__(cls, *args)
        self.new(obj)
        _set_state(obj, self.dec(node[3]) if len(node) > 3 else None)
        if len(node) > 4 and node[4] is not None:
            for n in node[4]:
                obj.append(self.dec(n))
        if len(node) > 5:
            self.fill_pairs_into(obj, node[5])
        return obj

    def fill_pairs_into(self, obj: Any, nodes: list[Any]) -> None:
        if len(nodes) % 2:
            raise _Refused("a mapping with a key and no value")
        dec = self.dec
        for i in range(0, len(nodes) - 1, 2):
            obj[dec(nodes[i])] = dec(nodes[i + 1])


def _dtype_name(name: Any) -> str:
    if type(name) is not str or len(name) > 8 or not name.isascii():
        raise _Refused(f"a numpy dtype named {name!r}")
    return name


def _set_state(obj: Any, state: Any) -> None:
    """``obj.__setstate__(state)`` when its class has one, else pickle's default."""
    if state is None:
        return
    _no_dunders(obj, state)
    setstate = getattr(type(obj), "__setstate__", None)
    if setstate is not None:
        _call_setstate(setstate, obj, state)
        return
    slots = None
    if type(state) is tuple and len(state) == 2:
        state, slots = state
    if state:
        if type(state) is not dict or not all(type(k) is str for k in state):
            raise _Refused(f"{_name(type(obj))} state that is not a str-keyed dict")
        obj.__dict__.update(state)
    if slots:
        _set_slots(obj, slots)


def _no_dunders(obj: Any, state: Any) -> None:
    """Refuse state that would put a ``__name__`` attribute in an instance (``__getstate__``,
    ``__reduce_ex__``: an instance attribute shadows the class's, and encoding looks them up)."""
    for part in state if type(state) is tuple else (state,):
        if type(part) is dict and any(type(k) is str and k[:2] == "__" == k[-2:] for k in part):
            raise _Refused(f"{_name(type(obj))} state naming a __dunder__ attribute")


def _call_setstate(setstate: Any, obj: Any, state: Any) -> None:
    try:
        setstate(obj, state)
    except Exception as exc:
        raise _Refused(f"{_name(type(obj))} refused its state: {exc}") from None
    except BaseException as exc:  # a Rust extension's panic, pyo3_runtime.PanicException
        if type(exc).__name__ != "PanicException":
            raise
        raise _Refused(f"{_name(type(obj))} refused its state: {exc}") from None


def _set_slots(obj: Any, slots: Any) -> None:
    declared = _slot_names(type(obj))
    if type(slots) is not dict or not all(k in declared for k in slots):
        raise _Refused(f"{_name(type(obj))} slot state naming undeclared slots")
    for k, v in slots.items():
        setattr(obj, k, v)


def _slot_names(cls: type) -> frozenset[str]:
    """Every slot ``cls`` declares or inherits, private names mangled."""
    known = _SLOTS.get(cls)
    if known is not None:
        return known
    names = set()
    for c in cls.__mro__:
        declared = vars(c).get("__slots__", ())
        for s in (declared,) if isinstance(declared, str) else declared:
            private = s.startswith("__") and not s.endswith("__")
            names.add(f"_{c.__name__.lstrip('_')}{s}" if private else s)
    return _SLOTS.setdefault(cls, frozenset(names))


_SLOTS: dict[type, frozenset[str]] = {}


def _bigint(d: _Decoder, node: list[Any]) -> int:
    if type(node[1]) is not bytes:
        raise _Refused("a big integer that is not bytes")
    return int.from_bytes(node[1], "little", signed=True)


def _bytes(raw: Any) -> bytes:
    if type(raw) is not bytes:
        raise _Refused("bytes expected")
    return raw


def _complex(d: _Decoder, node: list[Any]) -> complex:
    if type(node[1]) is not float or type(node[2]) is not float:
        raise _Refused("a complex number that is not two floats")
    return complex(node[1], node[2])


_DECODERS: list[Callable[[_Decoder, list[Any]], Any]] = [
    _Decoder.ref,                                              # REF
    lambda d, n: d.fill([], n[1:], list.append),               # LIST
    lambda d, n: d.frozen(n, tuple),                           # TUPLE
    lambda d, n: d.fill_pairs({}, n[1:]),                      # DICT
    lambda d, n: d.fill(set(), n[1:], set.add),                # SET
    lambda d, n: d.frozen(n, frozenset),                       # FROZENSET
    _Decoder.deque_,                                           # DEQUE
    lambda d, n: d.fill_pairs(OrderedDict(), n[1:]),           # ODICT
    lambda d, n: d.fill_pairs(Counter(), n[1:]),               # COUNTER
    _Decoder.ddict,                                            # DDICT
    _bigint,                                                   # BIGINT
    lambda d, n: d.new(bytearray(_bytes(n[1]))),               # BYTEARRAY
    _Decoder.glob,                                             # GLOBAL
    _Decoder.partial,                                          # PARTIAL
    _Decoder.random_,                                          # RANDOM
    _Decoder.ndarray,                                          # NDARRAY
    _Decoder.npscalar,                                         # NPSCALAR
    lambda d, n: _check_dtype(np.dtype(_dtype_name(n[1]))),   # DTYPE
    _Decoder.obj,                                              # OBJ
    _Decoder.obj,                                              # CALL
    _complex,                                                  # COMPLEX
]
