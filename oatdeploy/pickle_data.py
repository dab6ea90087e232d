"""Read a pickle that holds only plain data (dicts, lists, tuples, bytes, numbers and numeric numpy arrays)
without executing anything from it: CIFAR-10's python batches are such pickles.

`pickle.load` calls whatever the file names, so a crafted batch file runs its own code; even an Unpickler whose
`find_class` allows only numpy's reconstruct functions still hands the file's arguments to numpy constructors
(`dtype('O')` included). This module instead walks the opcode stream with `pickletools.genops` (a parser that
builds nothing) and interprets only the data opcodes. The globals a numpy array's or number's pickle names
(`_reconstruct`, `ndarray`, `dtype`, `_frombuffer`, `scalar`) and Python 3's `_codecs.encode` for bytes become inert
tokens here; an array is built by `np.frombuffer` from the raw bytes, only for fixed-size numeric dtypes. Any
other opcode or global (INST, OBJ, NEWOBJ, PERSID, EXT, an unknown class) is refused with `OatError`.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oatdeploy.runtime.errors import OatError

RECONSTRUCT, NDARRAY, DTYPE, FROMBUFFER, ENCODE = "reconstruct", "ndarray", "dtype", "frombuffer", "encode"
SCALAR = "scalar"
GLOBALS = {
    ("numpy.core.multiarray", "scalar"): SCALAR,
    ("numpy._core.multiarray", "scalar"): SCALAR,
    ("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): DTYPE,
    ("numpy.core.numeric", "_frombuffer"): FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): FROMBUFFER,
    ("_codecs", "encode"): ENCODE,
}
NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: fixed-size, no Python objects inside
STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING"}  # Python 2's str: bytes under encoding="bytes"
TEXT = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
BYTES = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
NUMBERS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"}
CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
IGNORED = {"PROTO", "FRAME"}


class Refused(Exception):
    """The pickle holds something other than plain data."""


@dataclass(frozen=True)
class Token:
    """One of the allowed globals, never called: REDUCE and BUILD interpret it."""

    name: str


@dataclass
class DtypeSpec:
    """`numpy.dtype(code, ...)` with its pickled state (the byte order) applied by BUILD."""

    code: str
    order: str = "|"

    def dtype(self) -> np.dtype:
        code = self.code if self.order in "|=" else self.order + self.code.lstrip("<>|=")
        dt = np.dtype(code)  # a type code string: no Python object is built from it
        if dt.kind not in NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise Refused(f"an array of dtype {dt} (only plain numeric arrays are read)")
        return dt


@dataclass
class ArraySpec:
    """`_reconstruct(ndarray, ...)` before BUILD fills in its shape, dtype and raw bytes."""

    array: np.ndarray | None = field(default=None)


class Mark:
    """The MARK opcode's place on the stack."""


MARK = Mark()


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")
    raise Refused(f"{type(value).__name__} where raw bytes were expected")


def text(value: str | bytes) -> str:
    """A type code or byte order: Python 2 pickles them as str, read here as bytes."""
    return value.decode("ascii") if isinstance(value, bytes) else value


def build_array(dtype: Any, shape: Any, raw: Any, fortran: bool = False) -> np.ndarray:
    if not isinstance(dtype, DtypeSpec):
        raise Refused("an array whose dtype is not a numpy dtype")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise Refused(f"an array shape {shape!r}")
    dt, data = dtype.dtype(), as_bytes(raw)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * dt.itemsize != len(data):
        raise Refused(f"an array of shape {shape} and dtype {dt} with {len(data)} bytes of data")
    return np.frombuffer(data, dtype=dt, count=count).reshape(shape, order="F" if fortran else "C")


def reduce(func: Any, args: Any) -> Any:
    if not isinstance(func, Token) or not isinstance(args, tuple):
        raise Refused(f"a call to {func!r}")
    if func.name == RECONSTRUCT and len(args) == 3 and args[0] == Token(NDARRAY):
        return ArraySpec()
    if func.name == DTYPE and args and isinstance(args[0], (str, bytes)):
        return DtypeSpec(text(args[0]))
    if func.name == ENCODE and len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
        return args[0].encode("latin-1")  # how Python 3 pickles bytes at protocol 2
    if func.name == SCALAR and len(args) == 2:
        return build_array(args[0], (), args[1]).item()  # a numpy number (a label list made with numpy)
    if func.name == FROMBUFFER and len(args) == 4:
        return build_array(args[1], args[2], args[0], fortran=args[3] == "F")
    raise Refused(f"a call to {func.name} with {len(args)} arguments")


def build(target: Any, state: Any) -> None:
    if isinstance(target, DtypeSpec) and isinstance(state, tuple) and len(state) >= 2:
        order = text(state[1]) if isinstance(state[1], (str, bytes)) else None
        if order not in ("<", ">", "|", "="):
            raise Refused(f"a dtype byte order {state[1]!r}")
        target.order = order
    elif isinstance(target, ArraySpec) and isinstance(state, tuple) and len(state) == 5 and target.array is None:
        _, shape, dtype, fortran, raw = state
        target.array = build_array(dtype, shape, raw, bool(fortran))
    else:
        raise Refused(f"a state set on {type(target).__name__}")


def finish(value: Any) -> Any:
    """Replace array placeholders by their arrays, throughout."""
    if isinstance(value, ArraySpec):
        if value.array is None:
            raise Refused("an array without data")
        return value.array
    if isinstance(value, dict):
        return {k: finish(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finish(v) for v in value]
    if isinstance(value, tuple):
        return tuple(finish(v) for v in value)
    if isinstance(value, (Token, DtypeSpec)):
        raise Refused(f"a bare {value!r}")
    return value


def pairs(items: list[Any]) -> list[tuple[Any, Any]]:
    if len(items) % 2:
        raise Refused("a dict with a key but no value")
    return list(zip(items[::2], items[1::2], strict=True))


def pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is MARK:
            items = stack[i + 1:]
            del stack[i:]
            return items
    raise Refused("a MARK-less sequence")


def interpret(data: bytes) -> Any:
    """The value a data-only pickle holds, building nothing but dicts, lists, tuples, bytes, numbers, arrays."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in IGNORED:
            continue
        if name == "STOP":
            if len(stack) != 1:
                raise Refused("a malformed stream")
            return finish(stack[0])
        if name in STRINGS or name in BYTES:
            stack.append(as_bytes(arg) if name in STRINGS else bytes(arg))
        elif name in TEXT or name in NUMBERS:
            stack.append(arg)
        elif name in CONSTANTS:
            stack.append(CONSTANTS[name])
        elif name == "MARK":
            stack.append(MARK)
        elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE"):
            stack.append({} if name == "EMPTY_DICT" else [] if name == "EMPTY_LIST" else ())
        elif name in ("DICT", "LIST", "TUPLE"):
            items = pop_mark(stack)
            stack.append(dict(pairs(items)) if name == "DICT" else
                         items if name == "LIST" else tuple(items))
        elif name in TUPLES:
            n = TUPLES[name]
            items, stack[-n:] = tuple(stack[-n:]), []
            stack.append(items)
        elif name in ("APPEND", "APPENDS"):
            items = [stack.pop()] if name == "APPEND" else pop_mark(stack)
            stack[-1].extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            items = stack[-2:] if name == "SETITEM" else pop_mark(stack)
            if name == "SETITEM":
                del stack[-2:]
            stack[-1].update(pairs(items))
        elif name in MEMO_PUT:
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in MEMO_GET:
            stack.append(memo[arg])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            module, qualname = arg.split(" ", 1) if name == "GLOBAL" else (stack.pop(-2), stack.pop())
            if (module, qualname) not in GLOBALS:
                raise Refused(f"a reference to {module}.{qualname}")
            stack.append(Token(GLOBALS[(module, qualname)]))
        elif name == "REDUCE":
            args = stack.pop()
            stack.append(reduce(stack.pop(), args))
        elif name == "BUILD":
            state = stack.pop()
            build(stack[-1], state)
        elif name in ("POP", "POP_MARK", "DUP"):
            if name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark(stack)
            else:
                stack.append(stack[-1])
        else:
            raise Refused(f"the opcode {name}")
    raise Refused("a stream without STOP")


def load_data_pickle(path: Path) -> Any:
    """The plain data a pickle file holds, or `OatError` naming what else it holds; nothing in it is run."""
    try:
        return interpret(path.read_bytes())
    except Refused as e:
        raise OatError(f"{path} holds {e}, which a dataset file never does; refusing to read it (nothing in it was "
                       "run): use the original dataset files") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeError) as e:
        raise OatError(f"{path} is not a readable pickle of plain data ({type(e).__name__}: {e}); use the original "
                       "dataset files") from None
