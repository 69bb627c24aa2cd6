"""Record: the base of the hub's immutable values, in place of a frozen dataclass.

dataclasses imports inspect, ast, dis and tokenize: ~1.3 MB of resident memory for the hub's lifetime.
A record declares its fields as a frozen dataclass does, as annotations with their defaults, and they
become its __slots__. It is built by position or keyword, compared and hashed by its fields, copied
with some of them changed by `replace`, and never changed itself. The fields named in the class
keyword `secret` are left out of its repr. A default is shared by all instances: make it immutable.
A record subclasses Record directly.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self, dataclass_transform
else:
    # Type checkers read typing's, and so take a record for a frozen dataclass.
    def dataclass_transform(**_options: object):
        return lambda cls: cls


class _RecordType(type):
    """Makes a class's annotated names its __slots__, and keeps their defaults aside: a slot is a class attribute."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], secret: tuple[str, ...] = ()
    ) -> _RecordType:
        fields = tuple(namespace.get("__annotations__", ()))
        namespace["__slots__"] = fields
        namespace["_defaults"] = {field: namespace.pop(field) for field in fields if field in namespace}
        namespace["_shown"] = tuple(field for field in fields if field not in secret)
        return super().__new__(mcs, name, bases, namespace)


@dataclass_transform(frozen_default=True)
class Record(metaclass=_RecordType):
    if TYPE_CHECKING:
        __slots__: ClassVar[tuple[str, ...]]
        _defaults: ClassVar[dict[str, Any]]
        _shown: ClassVar[tuple[str, ...]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        fields = self.__slots__
        if len(args) > len(fields):
            raise TypeError(f"{name} takes at most {len(fields)} arguments")
        given = dict(zip(fields, args))
        if wrong := sorted(kwargs.keys() - (set(fields) - given.keys())):
            raise TypeError(f"{name}: unknown or repeated arguments {wrong}")
        values = {**self._defaults, **given, **kwargs}
        if missing := [field for field in fields if field not in values]:
            raise TypeError(f"{name}: missing arguments {missing}")
        for field in fields:
            object.__setattr__(self, field, values[field])

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, field) for field in self.__slots__)

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied, as dataclasses.replace makes."""
        return type(self)(**{**dict(zip(self.__slots__, self._values())), **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):  # no record subclasses another: the same class
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{field}={getattr(self, field)!r}" for field in self._shown)
        return f"{type(self).__name__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")
