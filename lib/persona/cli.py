"""The ``persona`` command line: generate data, run the pipeline or one stage."""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from functools import partial

from persona.errors import DEBUG_ENV, PersonaError, short_message
from persona.logs import get_logger, setup_logging
from persona.privacy import export, forget
from persona.stages import STAGES


def _add_conf_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", default="conf/local.yaml",
                        help="YAML configuration (default: conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a configuration key, e.g. --set segment.k=6 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persona",
        description="User profiles and segments from raw user data: Spark, Delta Lake, "
        "a Horovod-trained autoencoder and K-Means, tracked in MLflow.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="write a synthetic data set with planted segments")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--bad-fraction", type=float, default=0.002,
                     help="share of corrupted event rows, for quarantine (default 0.002)")

    run = sub.add_parser("run", help="run every stage in order, then print the segments")
    _add_conf_args(run)
    _add_conf_args(sub.add_parser(
        "update", help="the daily job: features, embeddings and segments brought up to the "
                       "latest events with the models in use (no training; retrains when "
                       "due and retrain.auto is on)"))
    _add_conf_args(sub.add_parser(
        "config", help="print the effective configuration (defaults filled in), checked"))
    for name, module in STAGES.items():
        _add_conf_args(sub.add_parser(name, help=module.HELP))
    _add_conf_args(sub.add_parser(
        "privacy-check", help="look for raw user ids and personal values in the lake, the "
                              "MLflow artifacts and the report"))
    erase = sub.add_parser("forget", help=forget.HELP)
    _add_conf_args(erase)
    erase.add_argument("--ids", required=True, metavar="FILE",
                       help="one user id per line: raw ids, or pseudonyms in the lake")
    audiences = sub.add_parser("export", help=export.HELP)
    _add_conf_args(audiences)
    audiences.add_argument("--segments", required=True, metavar="all|ID,...",
                           help="all, or segment ids separated by commas")
    audiences.add_argument("--out", metavar="DIR",
                           help="output folder (default: <lake.root>/exports/<UTC time>)")
    return parser


def _generate(args: argparse.Namespace) -> None:
    from persona.generate import generate

    log = get_logger("generate")
    if args.users < 1:
        raise PersonaError(f"--users must be >= 1, got {args.users}")
    start = time.time()
    counts = generate(args.out, users=args.users, seed=args.seed,
                      bad_fraction=args.bad_fraction, log=log.info)
    log.info("wrote %s to %s in %.1f s", ", ".join(f"{v} {k}" for k, v in counts.items()),
             args.out, time.time() - start)


def _pipeline(args: argparse.Namespace) -> None:
    from persona.config import Config
    from persona.pipeline import run_pipeline, run_single, run_update
    from persona.runtime.context import run_stage

    config = Config.load(args.conf, args.overrides)
    if args.command == "config":
        print(config.to_yaml(), end="")
    elif args.command == "privacy-check":
        from persona.privacy.scan import privacy_check
        from persona.runtime.spark import get_spark

        print(privacy_check(get_spark(config), config))
    elif args.command == "run":
        run_pipeline(config)
    elif args.command == "update":
        run_update(config)
    elif args.command == "forget":
        run_stage("forget", partial(forget.run, ids_path=args.ids), config)
    elif args.command == "export":
        run_stage("export", partial(export.run, segments=args.segments, out=args.out), config)
    else:
        run_single(args.command, config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        if args.command == "generate":
            _generate(args)
        else:
            _pipeline(args)
    except PersonaError as exc:
        _debug_trace()
        print(f"persona: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # no traceback reaches the user unless asked for
        hint = "" if _debug_trace() else f" (run with {DEBUG_ENV}=1 for the full trace)"
        print(f"persona: error: {short_message(exc)}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("persona: interrupted", file=sys.stderr)
        return 130
    return 0


def _debug_trace() -> bool:
    """Print the traceback of the exception being handled when ``PERSONA_DEBUG`` is set."""
    if os.environ.get(DEBUG_ENV, "") in ("", "0"):
        return False
    traceback.print_exc()
    return True


if __name__ == "__main__":
    sys.exit(main())
