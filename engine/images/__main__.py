"""`python -m engine.images`: build the base, runner or a service image and print the tag(s)."""

from __future__ import annotations

import sys
from pathlib import Path

import docker
import docker.errors

import engine.images
from engine.errors import BackendError
from engine.images import BASE_TAG, RUNTIMES, ensure_base_image, ensure_runner_image, ensure_service_image


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.images base | all | runner [python|node] | service [--runtime node] NAME PATH`: build, print the tag(s)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.images", description=engine.images.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("base", help=f"make sure {BASE_TAG} exists (pull or debootstrap)")
    sub.add_parser("all", help="the base and every runner image")
    runner = sub.add_parser("runner", help="build the runner image")
    runner.add_argument("runtime", nargs="?", default="python", choices=RUNTIMES)
    service = sub.add_parser("service", help="build a service image from a project directory")
    service.add_argument("--runtime", default="python", choices=RUNTIMES, help="the runner it is built on")
    service.add_argument("name")
    service.add_argument("project", type=Path)
    args = parser.parse_args(argv)

    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        print(f"no Docker daemon reachable: {exc}; run scripts/ensure-docker", file=sys.stderr)
        return 1
    try:
        if args.what == "base":
            tag = ensure_base_image(client, show)
        elif args.what == "all":
            tag = "\n".join([ensure_base_image(client, show)] + [ensure_runner_image(client, r, show) for r in RUNTIMES])
        elif args.what == "runner":
            tag = ensure_runner_image(client, args.runtime, show)
        else:
            tag = ensure_service_image(client, args.name, args.project, ensure_runner_image(client, args.runtime, show), show)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
