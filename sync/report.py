"""Run report: counts per action, every planned action and rejected row with its reason;
written as JSON and CSV, summarised on the terminal; a progress bar for long runs."""
from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ACTION_ORDER = ["add-site", "update-site", "add-record", "update-record", "add-account", "update", "move",
                "enable", "withdraw", "disable", "purge", "keep-disabled", "group-add", "group-remove"]


@dataclass
class Action:
    op: str
    source_id: str = ""
    district_id: str = ""
    dn: str = ""
    reason: str = ""
    detail: str = ""


@dataclass
class Report:
    source: str
    input_kind: str
    input_path: str
    dry_run: bool
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    rows: int = 0
    people: int = 0
    skipped: int = 0                                 # rows of people Rollcall does not sync (guardians …)
    actions: list = field(default_factory=list)
    rejected: list = field(default_factory=list)
    failures: list = field(default_factory=list)     # Action with reason = LDAP error
    refused: str = ""                                # why nothing was applied (threshold, empty file)
    forced: str = ""
    timings: dict = field(default_factory=dict)
    applied: bool = False

    def counts(self):
        c = Counter(a.op for a in self.actions)
        return {k: c[k] for k in ACTION_ORDER if c.get(k)} | {k: v for k, v in c.items() if k not in ACTION_ORDER}

    def as_dict(self):
        return {
            "source": self.source, "input": self.input_path, "input_kind": self.input_kind,
            "started": self.started, "dry_run": self.dry_run, "applied": self.applied,
            "refused": self.refused, "forced": self.forced, "rows": self.rows, "people": self.people,
            "skipped": self.skipped,
            "counts": self.counts(), "rejected_rows": len(self.rejected), "failures": len(self.failures),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "actions": [asdict(a) for a in self.actions],
            "rejected": [asdict(r) for r in self.rejected],
            "errors": [asdict(a) for a in self.failures],
        }

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
        base = directory / f"sync-{self.source.replace('/', '_')}-{stamp}{'-dry-run' if self.dry_run else ''}"
        jpath, cpath = base.with_suffix(".json"), base.with_suffix(".csv")
        jpath.write_text(json.dumps(self.as_dict(), ensure_ascii=False, indent=1))
        with open(cpath, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["kind", "action", "source_id", "district_id", "dn", "reason", "detail",
                        "file", "line", "column"])
            for a in self.actions:
                w.writerow(["action", a.op, a.source_id, a.district_id, a.dn, a.reason, a.detail, "", "", ""])
            for a in self.failures:
                w.writerow(["error", a.op, a.source_id, a.district_id, a.dn, a.reason, a.detail, "", "", ""])
            for r in self.rejected:
                w.writerow(["rejected", "", "", r.key, "", r.reason, "", r.file, r.line, r.column])
        return jpath, cpath

    def summary(self) -> str:
        lines = [f"sync {self.source}: {self.input_path} ({self.input_kind}): {self.rows} rows, {self.people} people"
                 + (f", {self.skipped} skipped (guardians, parents, relatives)" if self.skipped else "")
                 + (" [DRY RUN: nothing changed]" if self.dry_run else "")]
        counts = self.counts()
        if counts:
            lines.append("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        else:
            lines.append("  no changes")
        if self.rejected:
            lines.append(f"  {len(self.rejected)} rejected row(s):")
            for r in self.rejected[:10]:
                lines.append(f"    {r.file}:{r.line}: {r.column or '-'}: {r.reason}")
            if len(self.rejected) > 10:
                lines.append(f"    … {len(self.rejected) - 10} more in the report")
        if self.failures:
            lines.append(f"  {len(self.failures)} operation(s) failed:")
            for a in self.failures[:10]:
                lines.append(f"    {a.op} {a.dn}: {a.reason}")
        if self.refused:
            lines.append(f"  REFUSED: {self.refused}")
        if self.forced:
            lines.append(f"  FORCED: {self.forced}")
        if self.timings:
            lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        return "\n".join(lines)

    def plan_text(self, limit=None) -> str:
        out = []
        for a in self.actions[:limit]:
            out.append(f"{a.op:13} {a.district_id or a.source_id:12} {a.dn}  ({a.reason}{'; ' + a.detail if a.detail else ''})")
        if limit is not None and len(self.actions) > limit:
            out.append(f"… {len(self.actions) - limit} more (see the report files)")
        return "\n".join(out)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or forced)."""

    def __init__(self, total, label, enabled=None, stream=None):
        self.stream = stream or sys.stderr
        self.total = max(total, 1)
        self.label = label
        self.enabled = (self.stream.isatty() and total >= 200) if enabled is None else (enabled and total > 0)
        self.n = 0
        self.last = 0.0
        self.t0 = time.monotonic()

    def step(self, k=1):
        self.n += k
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and self.n < self.total:
            return
        self.last = now
        frac = min(self.n / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = self.n / max(now - self.t0, 1e-6)
        self.stream.write(f"\r{self.label:14} [{bar:30}] {self.n}/{self.total} {rate:,.0f}/s")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.n = max(self.n, 0)
            self.last = 0
            self.step(0)
            self.stream.write("\n")
            self.stream.flush()
