"""The ``ecm`` command: broker, topics, worker, watch, case, report, demo, simulate, score."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from stream.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker")
    p.add_argument("--port", type=int, default=9092)

    p = sub.add_parser("topics", help="create the project's topics (idempotent)")
    p.add_argument("--broker")

    p = sub.add_parser("worker", help="run one worker")
    p.add_argument("--broker")
    p.add_argument("--web-port", type=int)
    p.add_argument("--datadir")

    p = sub.add_parser("watch", help="print escalations as they arrive")
    p.add_argument("--broker")
    p.add_argument("--from-beginning", action="store_true")

    from stream import case
    from stream.report import cli as report

    case.add_parser(sub)
    report.add_parser(sub)

    p = sub.add_parser("desk", help="serve the duty desk's board: open cases, live, and act")
    p.add_argument("--broker")
    p.add_argument("--port", type=int, help="default ECM_DESK_PORT (6070)")

    p = sub.add_parser("demo", help="broker, worker, a small region's live feed, escalations")
    p.add_argument("--duration", type=float, default=0.0,
                   help="seconds to run; 0 runs until Ctrl-C")
    p.add_argument("--visits", type=int, default=300)
    p.add_argument("--seed", type=int, default=7)

    p = sub.add_parser("simulate", help="play a simulated region's day into Kafka and grade it")
    p.add_argument("--broker")
    p.add_argument("--embedded", action="store_true",
                   help="start the embedded broker for this run")
    p.add_argument("--run-workers", type=int, default=0, metavar="N",
                   help="start N workers on the simulated clock (0: run your own)")
    p.add_argument("--clients", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2_500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--date", default="2026-11-23", help="the simulated day (UTC)")
    p.add_argument("--start-hour", type=float, default=6.0)
    p.add_argument("--hours", type=float, default=18.0, help="of each day")
    p.add_argument("--days", type=int, default=1,
                   help="days to play from --date (a week: 7); --hours of each")
    p.add_argument("--speed", type=float, default=60.0,
                   help="simulated seconds per wall second (60: an hour a minute)")
    p.add_argument("--batch-size", type=int, default=100, help="events per message")
    p.add_argument("--no-desk", action="store_true",
                   help="no duty desk acting on the missed visits' cases")
    p.add_argument("--runs", action="store_true",
                   help="the workers predict their runs (ECM_RUNS), and at_risk and the "
                        "ETA are graded")
    p.add_argument("--rate", action="append", metavar="NAME=VALUE",
                   help="a failure rate, e.g. --rate missed=0.02 (repeatable)")
    p.add_argument("--ledger", default="sim-ledger.json")
    p.add_argument("--no-score", action="store_true")
    p.add_argument("--json", action="store_true", help="end with one JSON line")

    p = sub.add_parser("score", help="grade the escalation topic against a ledger")
    p.add_argument("--broker")
    p.add_argument("--ledger", default="sim-ledger.json")
    p.add_argument("--json", action="store_true", help="end with one JSON line")

    args = parser.parse_args(argv)
    settings = Settings.from_env(broker=getattr(args, "broker", None),
                                 web_port=getattr(args, "web_port", None),
                                 datadir=getattr(args, "datadir", None))
    if args.command == "broker":
        return _broker(args.port)
    if args.command == "topics":
        from stream.topics import ensure_topics

        created = ensure_topics(settings)
        print("created: " + (", ".join(created) if created else "nothing, all present"))
        return 0
    if args.command == "worker":
        return _worker(settings)
    if args.command == "watch":
        from stream.watch import watch

        return watch(settings, from_beginning=args.from_beginning)
    if args.command == "case":
        return case.run(args, settings)
    if args.command == "report":
        return report.run(args, settings)
    if args.command == "desk":
        from stream.desk.server import run

        return run(settings.with_(desk_port=args.port))
    if args.command == "simulate":
        from pathlib import Path

        from simulator.run import config_from_args, simulate

        report = simulate(config_from_args(args), settings, ledger_path=Path(args.ledger),
                          embedded=args.embedded, worker_procs=args.run_workers,
                          do_score=not args.no_score, as_json=args.json)
        return 0 if report.get("duplicates", 0) == 0 else 1
    if args.command == "score":
        from pathlib import Path

        from simulator.run import score_command

        score_command(settings, Path(args.ledger), args.json)
        return 0
    if args.command == "demo":
        from stream.demo import run_demo

        return run_demo(duration_s=args.duration, visits=args.visits, seed=args.seed)
    return 2  # pragma: no cover - argparse enforces the choices


def _broker(port: int) -> int:
    from stream.broker import EmbeddedBroker

    broker = EmbeddedBroker(port, quiet=False).start()

    def stop(signum: int, frame: object) -> None:
        # Unwind the main thread out of its wait; the finally below stops the broker.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"embedded broker listening on {broker.bootstrap}; Ctrl-C stops it", flush=True)
    try:
        broker.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def _worker(settings: Settings) -> int:
    from faust.worker import Worker

    from stream.topics import ensure_topics
    from stream.worker.app import create_app
    from stream.worker.heap import Heap
    from stream.worker.logs import logging_config

    Heap.tune()
    ensure_topics(settings)
    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level, redirect_stdouts=False,
                    logging_config=logging_config(settings.log_format, settings.log_level))
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
