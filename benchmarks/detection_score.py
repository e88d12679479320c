"""Detection score: does every injected fault page the right captain, nothing else, in time?

A simulated fleet with no legitimate alarm of its own (``firmware_sim/scenarios/
detection.yaml``: 500 indoor cabinets, fresh consumables, nobody opening a door) suffers
every fault type of :class:`firmware_sim.faults.Fault` twelve times, each at a cabinet of
its own. The whole server side runs as in the alerting end-to-end test: a Mosquitto of
its own, the alerting service (ingest and alerting in one process) with its SQLite
store, a real InfluxDB behind its shim, and a real SMTP server (aiosmtpd) that keeps
every email the captains, backups and coordinators are sent. The fleet runs in a child
process of its own, as cabinets do, so that the simulation's CPU does not delay the
service's event loop; both share one scaled clock (anchored on the machine's monotonic
clock, which all processes read alike).

From the simulator's ground truth (when each fault began, at which cabinet), the
mailbox (who was sent what, and when it arrived) and the alarm store (which alarms an
email spoke for), the score reports:

- **recall** per fault type: injected faults whose expected alarms
  (:data:`benchmarks.detection.plan.EXPECTED`) reached the cabinet's own captain as a
  page. Goal: 100 %.
- **precision**: pages, to anyone, explained by a fault injected at that cabinet, either
  by an expected alarm or by a side effect the fault legitimately causes
  (:data:`benchmarks.detection.plan.SIDE_EFFECTS`: a failed battery also turns the ready
  light off and fails the next self-test), each side effect counted and listed on its
  own. Each alarm an email speaks for counts as one page. Goal: 100 %.
- **latency** per fault type and alarm: wall seconds from the fault to the arrival of
  the captain's page, minus the designed delay. Goal: within 5 s. Two faults are timed
  from the moment the cabinet can first tell: a circuit fault from the next self-test,
  a flat battery from the next heartbeat (the battery level is a heartbeat reading; the
  heartbeat's time is read back from InfluxDB).

Designed delay, and why the figures are in wall seconds: the rules count their delays
(temperature outside the range 30 min, AED not back 30 min) on the clock, which runs
``--scale`` times faster than the wall, so the rule's delay is converted to wall
seconds (30 clock minutes are 180 wall seconds at scale 10) before it is subtracted.
Warnings (offline, power lost) are not sent at once by design: non-urgent notices wait
for the grouping window (5 clock minutes) so that several alarms for one captain make
one message; that window is part of the designed delay and shown in its own column.
Everything else the service does (ingest batching, the scheduler's 1 s tick, rendering,
SMTP) takes wall time and is what the 5 s goal measures, along with the simulated
hardware's sampling (every 10 clock seconds: 1 wall s at scale 10).

The scale is a trade: the slowest rules (30 clock minutes) take ``1800 / scale`` wall
seconds, but the fleet's message rate grows with it, ``cabinets * scale / 60``
heartbeats per wall second (at scale 10, 500 cabinets send as much as 5,000 do in real
time). The report prints that rate and the CPU each process used, so that a latency
can be read against the load it was measured under.

    PYTHONPATH=. .venv/bin/python benchmarks/detection_score.py              # 500 cabinets
    PYTHONPATH=. .venv/bin/python benchmarks/detection_score.py --cabinets 50 --quick

Exit status: 0 when every goal is met, 1 when one is missed, 2 when the run itself
failed (the fleet did not come up before the first fault, the service stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.detection.harness import FleetJob, run, run_fleet
from benchmarks.detection.plan import (
    DEFAULT_SCALE,
    MIN_CABINETS,
    QUICK_CABINETS,
    QUICK_SCALE,
    SCENARIO,
    RunFailedError,
    scored_scenario,
)
from benchmarks.detection.report import report
from firmware_sim.scenario import load_scenario


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--fleet-job":
        # The fleet's own process (see FleetProcess); it runs until terminated.
        asyncio.run(run_fleet(FleetJob.model_validate_json(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cabinets", type=int, help=f"fleet size (default {MIN_CABINETS})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: only the faults on the first {QUICK_CABINETS} cabinets "
        f"(3 of each type), {QUICK_CABINETS} cabinets unless --cabinets; not a score",
    )
    parser.add_argument(
        "--scale",
        type=float,
        help=f"clock seconds per wall second (default {DEFAULT_SCALE:g}, quick {QUICK_SCALE:g})",
    )
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument(
        "--keep", type=Path, help="keep the run's files (logs, store, ground truth) here"
    )
    args = parser.parse_args()
    if args.cabinets is None:
        args.cabinets = QUICK_CABINETS if args.quick else MIN_CABINETS
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else DEFAULT_SCALE
    try:
        scored_scenario(load_scenario(args.scenario), args.cabinets, args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    work = args.keep or Path(tempfile.mkdtemp(prefix="aedfleet-detection-"))
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=work / "service.log",
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        score, facts = asyncio.run(run(args, work))
    except RunFailedError as exc:
        print(f"the run failed: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report(score, facts)))
    if args.keep is not None:
        print(f"the run's files: {work}")
    sys.exit(0 if score.met else 1)


if __name__ == "__main__":
    main()
