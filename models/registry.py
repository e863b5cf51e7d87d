"""A small name -> factory registry, shared by fusion methods, encoders and balancers.

Modelled on timm's `register_model` / `list_models` / `create_model`: adding a method is
one decorated function or class, and tests parametrize over `names()` so a new entry is
covered the day it is registered.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise an error listing the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorator

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def register_class(self, name: str) -> Callable[[type], type]:
        """Class decorator for strategy classes (balancers, objectives, regimes): registers the
        class under `name` and sets its `name` attribute, so an instance knows what it is."""

        def decorator(cls: type) -> type:
            cls.name = name
            self.register(name)(cls)
            return cls

        return decorator

    def build(self, settings: Mapping[str, Any], name_key: str, where: str, *args: Any, **kwargs: Any) -> T:
        """registry[settings["name"]](*args, **kwargs, **the other settings), for a config section.

        An unknown name names the setting (`name_key`, e.g. balancing.name) and lists the known
        ones; a setting the class does not take is one line naming the section (`where`).
        """
        from data_prep.errors import PipelineInputError

        options = dict(settings)
        name = options.pop("name", None)
        if name not in self:
            raise PipelineInputError(f"{name_key}={name!r}: unknown {self.kind}; known: {', '.join(self.names())}")
        try:
            return self.get(name)(*args, **kwargs, **options)
        except TypeError as err:
            raise PipelineInputError(f"{where} ({name}): {err}") from None


def import_plugins(package: str, path: list[str] | Any, skip: tuple[str, ...] = ("base",)) -> None:
    """Import every module of a plugin package (fusion methods, balancers, objectives, regimes),
    so that a new method is one module that registers itself on import."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(path):
        if module.name not in skip:
            importlib.import_module(f"{package}.{module.name}")
