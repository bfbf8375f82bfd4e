"""The soak's figures as a table, a Markdown report and a chart (latency and memory over time)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

GOALS = (
    ("thinking", "replies left on thinking…", 0),
    ("writes_lost", "acknowledged writes lost", 0),
    ("duplicates", "duplicate answers", 0),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("requests sent", _fmt(report["sent"])),
        ("answered", _fmt(report["answered"])),
        ("refused with a clear message", _fmt(report["refused"])),
        ("failed (generic error or nothing shown)", _fmt(report["failed"])),
        (
            "never answered",
            f"{report['unanswered']} ({report['unanswered_shard_down']} sent while their shard had no process)",
        ),
        ("left on thinking… (goal 0)", _fmt(report["thinking"])),
        ("answered but never final", _fmt(report["never_final"])),
        ("duplicate answers (goal 0)", _fmt(report["duplicates"])),
        ("acknowledged writes", _fmt(report["writes_acked"])),
        ("acknowledged writes lost (goal 0)", _fmt(report["writes_lost"])),
        ("tracebacks in the bots' logs", _fmt(report["traceback_count"])),
        ("soak's own send errors", _fmt(report["send_errors"])),
        (
            "time to first text p50/p95/p99",
            "/".join(_fmt(report["overall_first"].get(k)) for k in ("p50", "p95", "p99")) + " s",
        ),
        (
            "time to final p50/p95/p99",
            "/".join(_fmt(report["overall_final"].get(k)) for k in ("p50", "p95", "p99")) + " s",
        ),
    ]
    for key, g in report["memory"].items():
        rss, fds = g.get("rss_growth"), g.get("fd_growth")
        rows.append(
            (
                f"{key}: RSS, descriptors after warm-up",
                f"{_fmt(g.get('rss_start_mb'))} → {_fmt(g.get('rss_end_mb'))} MB "
                f"({'–' if rss is None else f'{rss:+.1%}'}), fds {'–' if fds is None else f'{fds:+.1%}'}",
            )
        )
    return rows


def fault_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for fault in report["faults"]:
        phases = report["latency"].get(fault["name"], {})
        cells = [fault["name"], f"{fault['start']:.0f}–{fault['end']:.0f} s", _fmt(fault["recovered_s"])]
        for phase in ("before", "during", "after"):
            p = phases.get(phase, {})
            first, final = p.get("first", {}), p.get("final", {})
            cells.append(
                f"n={first.get('n', 0)} {_fmt(first.get('p50'))}/{_fmt(first.get('p95'))}/{_fmt(first.get('p99'))}"
                f" · {_fmt(final.get('p50'))}/{_fmt(final.get('p95'))}/{_fmt(final.get('p99'))}"
            )
        rows.append(cells)
    return rows


FAULT_HEAD = ["fault", "when", "recovered (s)", "before: first · final p50/p95/p99 (s)", "during", "after"]


def render_table(report: dict[str, Any]) -> str:
    c = report["cpu"]
    lines = [
        f"CPU: {c['model']} · {report['cores']} cores · flags {' '.join(c['flags']) or '-'} · "
        f"load at the end {report['loadavg_end']}",
    ]
    width = max(len(k) for k, _ in summary_rows(report))
    lines += [f"  {k:<{width}}  {v}" for k, v in summary_rows(report)]
    lines.append("")
    lines.append("  " + " | ".join(FAULT_HEAD))
    lines += ["  " + " | ".join(row) for row in fault_rows(report)]
    for log, entries in report["tracebacks"].items():
        lines.append(f"  tracebacks in {log}:")
        lines += [f"    {e}" for e in sorted(set(entries))[:10]]
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    timed = report["timed"]
    top.scatter(
        [t[0] for t in timed if t[2] is not None],
        [t[2] for t in timed if t[2] is not None],
        s=6,
        label="final",
    )
    top.scatter(
        [t[0] for t in timed if t[1] is not None],
        [t[1] for t in timed if t[1] is not None],
        s=6,
        label="first text",
    )
    top.set_ylabel("seconds from the request")
    top.legend(loc="upper left", fontsize=8)
    for key, samples in report["samples"].items():
        bottom.plot([s["at"] for s in samples], [s["rss_mb"] for s in samples], label=key)
    bottom.set_ylabel("resident MB")
    bottom.set_xlabel("seconds into the soak (request sent)")
    bottom.legend(loc="upper left", fontsize=8)
    for axis in (top, bottom):
        for fault in report["faults"]:
            axis.axvspan(fault["start"], max(fault["end"], fault["start"] + 1), color="red", alpha=0.12)
    for fault in report["faults"]:
        top.annotate(fault["name"], (fault["start"], 0), rotation=90, fontsize=7, va="bottom")
    figure.tight_layout()
    figure.savefig(path)


def write_report(report: dict[str, Any], path: Path) -> None:
    picture = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    chart(report, picture)
    c, s = report["cpu"], report["settings"]
    today = datetime.date.today().isoformat()
    lines = [
        "# Soak report",
        "",
        f"Generated by `python -m benchmarks.soak` on {today}. CPU: {c['model']}, {report['cores']} cores, "
        f"flags {', '.join(c['flags']) or 'none of the listed'}; load average at the end {report['loadavg_end']} "
        "(the cores are shared with whatever else ran).",
        "",
        f"Settings: {s['minutes']:g} min, {s['rate']:g} requests/min, mix {s['mix']}, {s['max_new_tokens']} new "
        f"tokens, {s['channels']} channels + 1 thread per guild, {s['members']} members per guild, llama-server "
        f"with {s['slots']} slots and {s['threads']} threads, faults {list(s['faults'])} "
        f"({s['fault_s']:g} s each where they last), warm-up {s['warm_up_s']:g} s, phase window {s['window_s']:g} s.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(report)]
    lines += ["", "| " + " | ".join(FAULT_HEAD) + " |", "|" + "---|" * len(FAULT_HEAD)]
    lines += ["| " + " | ".join(row) + " |" for row in fault_rows(report)]
    lines += ["", "Faults:", ""]
    lines += [f"- **{f['name']}**: {f['detail']}" for f in report["faults"]]
    lines += ["", "By command (answered / refused / failed / unanswered / thinking):", ""]
    for kind, t in sorted(report["by_kind"].items()):
        lines.append(
            f"- `{kind}`: {t['answered']} / {t['refused']} / {t['failed']} / {t['unanswered']} / {t['thinking']}"
        )
    if report["lost"]:
        lines += ["", "Acknowledged writes lost:", ""] + [f"- {w}" for w in report["lost"]]
    if report["failures"]:
        lines += ["", "Failed, unanswered (shard up) or thinking requests (first 30):", ""]
        lines += [f"- {f['at']} s `{f['kind']}` {f['status']}: {f['text']!r}" for f in report["failures"]]
    if report["tracebacks"]:
        lines += ["", "Tracebacks in the bots' logs (the log line, then the exception):", ""]
        for log, entries in report["tracebacks"].items():
            lines += [f"- `{Path(log).parent.parent.name}/{Path(log).parent.name}`: {len(entries)}"]
            lines += [f"  - `{e}`" for e in sorted(set(entries))[:10]]
    lines += ["", f"![Latency and memory over time]({picture.name})", ""]
    path.write_text("\n".join(lines))
