"""A job's folder, which every process writes and rank 0 merges (no Lightning here):

    DIR/job.json                 the command, its options and their fingerprint (latest run)
    DIR/parts/NNNNNNNN.json      one unit's records, with the fingerprint and the unit's key;
                                 written whole (temp file + rename) or not at all
    DIR/processed/rankR.log      a JSON line per unit a process finished: run, rank, unit,
                                 input indices (appended; every run of the job)
    DIR/status/rankR.json        done or failed, per run; its time is the process's heartbeat

A part counts as done when its fingerprint and key equal this run's: a changed option or a
changed input makes its unit be processed again."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from mmseq.jobs.tasks import Unit
from mmseq.serialization import read_json, write_text_atomic

HEARTBEAT_S = 5.0  # how often a process touches its status file
DEAD_AFTER_S = 120.0  # a process silent this long, and not done, is taken as dead


class JobDir:
    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.parts = self.path / "parts"
        self.processed = self.path / "processed"
        self.status = self.path / "status"

    # -- before the processes start -----------------------------------------------------

    def create(self) -> None:
        """Make the folders, or say why not (ValueError naming --job-dir)."""
        for folder in (self.path, self.parts, self.processed, self.status):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ValueError(
                    f"--job-dir {self.path}: cannot create {folder} ({err.strerror})"
                ) from None
        for folder in (self.parts, self.processed, self.status):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ValueError(f"--job-dir {self.path}: {folder} is not writable")

    # -- rank 0, before the work --------------------------------------------------------

    def clear(self) -> None:
        """A run without --resume starts afresh."""
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True, exist_ok=True)

    def previous_options(self) -> dict[str, Any] | None:
        try:
            return read_json(self.path / "job.json").get("options")
        except ValueError:
            return None

    def write_job(self, options: dict[str, Any], units: int) -> None:
        job = {"fingerprint": self.fingerprint, "options": options, "units": units}
        write_text_atomic(self.path / "job.json", json.dumps(job, indent=1) + "\n")

    def pending(self, units: list[Unit]) -> tuple[list[int], int, int]:
        """The units to do, and how many of them hold a part made with other options, and
        with the same options from other inputs."""
        todo, other_options, other_inputs = [], 0, 0
        for number, unit in enumerate(units):
            part = self.read_part(number)
            if part is None:
                todo.append(number)
            elif part.get("fingerprint") != self.fingerprint:
                todo.append(number)
                other_options += 1
            elif part.get("key") != unit.key:
                todo.append(number)
                other_inputs += 1
        return todo, other_options, other_inputs

    # -- every rank, as it works ----------------------------------------------------------

    def part_path(self, number: int) -> Path:
        return self.parts / f"{number:08d}.json"

    def read_part(self, number: int) -> dict[str, Any] | None:
        path = self.part_path(number)
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # written atomically, so only by hand: redo it
            return None
        return part if isinstance(part, dict) else None

    def write_part(
        self, number: int, unit: Unit, records: list[dict[str, Any]], run: str, rank: int
    ) -> None:
        part = {"fingerprint": self.fingerprint, "key": unit.key, "unit": number}
        part |= {"inputs": unit.inputs, "run": run, "records": records}
        write_text_atomic(self.part_path(number), json.dumps(part, ensure_ascii=False))
        line = {"run": run, "rank": rank, "unit": number, "inputs": unit.inputs}
        with open(self.processed / f"rank{rank}.log", "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")

    def report(self, rank: int, run: str, state: str, error: str | None = None) -> None:
        status = {"run": run, "rank": rank, "state": state, "error": error}
        write_text_atomic(self.status / f"rank{rank}.json", json.dumps(status) + "\n")

    def heartbeat(self, rank: int, run: str) -> threading.Event:
        """Touch this rank's status every HEARTBEAT_S until the returned event is set."""
        stop = threading.Event()
        self.report(rank, run, "running")
        path = self.status / f"rank{rank}.json"

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                try:
                    os.utime(path)
                except OSError:
                    pass

        threading.Thread(target=beat, daemon=True, name="mmseq-job-heartbeat").start()
        return stop

    # -- rank 0, after the work -------------------------------------------------------------

    def wait_for(self, ranks: int, run: str, alive: Any = None) -> None:  # noqa: ANN401
        """Until every rank reports this run done; ValueError if one failed or fell silent.
        alive(): False once a process this one started has died (checked each poll)."""
        waiting = set(range(ranks))
        while waiting:
            for rank in sorted(waiting):
                path = self.status / f"rank{rank}.json"
                try:
                    status = json.loads(path.read_text(encoding="utf-8"))
                    age = time.time() - path.stat().st_mtime
                except (OSError, ValueError):
                    status, age = {}, 0.0
                if status.get("run") != run:
                    continue
                if status.get("state") == "done":
                    waiting.discard(rank)
                elif status.get("state") == "failed":
                    raise ValueError(f"rank {rank} failed: {status.get('error')}")
                elif age > DEAD_AFTER_S:
                    raise ValueError(
                        f"rank {rank} stopped reporting {age:.0f} s ago (killed?); rerun "
                        "with --resume to finish the job"
                    )
            if waiting and alive is not None and not alive():
                raise ValueError(
                    "a process of the job ended before finishing its share; rerun with "
                    "--resume to finish the job"
                )
            if waiting:
                time.sleep(0.1)

    def records(self, units: list[Unit]) -> list[dict[str, Any]]:
        """Every input's record, in input order."""
        out = []
        for number, unit in enumerate(units):
            part = self.read_part(number)
            stale = part is None or part.get("fingerprint") != self.fingerprint
            if stale or part.get("key") != unit.key:
                raise ValueError(
                    f"{self.part_path(number)}: missing or made with other options; rerun "
                    "with --resume"
                )
            out += part["records"]
        return out
