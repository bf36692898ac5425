"""The monthly report as CSV, XLSX and a printable HTML page, in Chinese (default) or English.

Spreadsheet cells are escaped against formula injection: a text cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, so Excel and WPS show it as
text instead of running it (titles, names and notes can come from residents' reports).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Sequence
from typing import Any

from openpyxl import Workbook

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LANGS = ("zh", "en")

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "月度报告", "meeting": "三方联席会议（每月5日）", "figures": "本月概况", "problems": "问题清单",
        "responsibilities": "责任清单", "rectifications": "整改清单", "site": "社区", "month": "月份",
        "period": "统计区间", "generated_at": "生成时间", "published_at": "发布时间（已冻结）", "draft": "草稿（未发布）",
        "opened": "新立案", "closed": "已销号", "cancelled": "已取消", "resolved": "办结次数", "reopened": "复开次数",
        "carried_in": "上月结转", "open_at_end": "月末未结", "reopen_rate_pct": "复开率 %", "repeat_faults": "重复故障",
        "ack_pct": "按时签收率 %", "fix_pct": "按时修复率 %", "ack_mean": "平均签收用时（分钟）",
        "ack_median": "签收用时中位数（分钟）", "fix_mean": "平均修复用时（分钟，不含挂起）",
        "fix_median": "修复用时中位数（分钟，不含挂起）", "resident_reports": "居民报修", "resident_tickets": "居民/网格员立案",
        "severity": "等级", "team": "责任单位", "ticket": "工单", "opened_at": "立案时间", "item": "事项",
        "subject": "对象", "fault": "故障", "source": "来源", "status": "状态", "carried": "上月结转",
        "role": "分工", "assignee": "处理人", "dispatched_at": "派单时间", "ack_due_at": "签收期限",
        "acknowledged_at": "签收时间", "ack_on_time": "按时签收", "resolve_due_at": "修复期限", "resolved_at": "办结时间",
        "closed_at": "销号时间", "fix_minutes": "修复用时（分钟）", "held_minutes": "挂起（分钟）", "fix_on_time": "按时修复",
        "reopen_count": "复开次数", "outcome": "整改情况", "value": "数值", "figure": "指标",
        "ack_counted": "签收考核数", "fix_counted": "修复考核数",
        "lead": "牵头", "assist": "协办", "yes": "是", "no": "否", "pending": "—",
        "closed_outcome": "已整改销号", "cancelled_outcome": "已取消", "in_progress_outcome": "整改中",
    },
    "en": {
        "title": "Monthly report", "meeting": "Three-party meeting (5th of the month)", "figures": "Figures",
        "problems": "Problems", "responsibilities": "Responsibilities", "rectifications": "Rectifications",
        "site": "Community", "month": "Month", "period": "Period", "generated_at": "Generated",
        "published_at": "Published (frozen)", "draft": "Draft (not published)",
        "opened": "Opened", "closed": "Closed", "cancelled": "Cancelled", "resolved": "Resolutions", "reopened": "Reopenings",
        "carried_in": "Carried in", "open_at_end": "Open at month end", "reopen_rate_pct": "Reopen rate %",
        "repeat_faults": "Repeat faults", "ack_pct": "Acknowledged within SLA %", "fix_pct": "Fixed within SLA %",
        "ack_mean": "Mean time to acknowledge (min)", "ack_median": "Median time to acknowledge (min)",
        "fix_mean": "Mean time to fix (min, hold excluded)", "fix_median": "Median time to fix (min, hold excluded)",
        "resident_reports": "Residents' reports", "resident_tickets": "Tickets from residents/grid officers",
        "severity": "Severity", "team": "Team", "ticket": "Ticket", "opened_at": "Opened", "item": "Item",
        "subject": "Subject", "fault": "Fault", "source": "Source", "status": "Status", "carried": "Carried in",
        "role": "Role", "assignee": "Assignee", "dispatched_at": "Dispatched", "ack_due_at": "Ack due",
        "acknowledged_at": "Acknowledged", "ack_on_time": "Ack on time", "resolve_due_at": "Fix due",
        "resolved_at": "Resolved", "closed_at": "Closed", "fix_minutes": "Time to fix (min)",
        "held_minutes": "On hold (min)", "fix_on_time": "Fixed on time",
        "reopen_count": "Reopened", "outcome": "Outcome", "value": "Value", "figure": "Figure",
        "ack_counted": "Acknowledgements counted", "fix_counted": "Fixes counted",
        "lead": "lead", "assist": "assisting", "yes": "yes", "no": "no", "pending": "—",
        "closed_outcome": "fixed and closed", "cancelled_outcome": "cancelled", "in_progress_outcome": "in progress",
    },
}


def safe_cell(value: Any) -> Any:
    """A value a spreadsheet will not run: text that could start a formula is quoted with '."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _lang(lang: str) -> dict[str, str]:
    if lang not in LABELS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
    return LABELS[lang]


def _yes_no(value: Any, t: dict[str, str]) -> str:
    return t["pending"] if value is None else t["yes"] if value else t["no"]


def _time(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else ""


def figure_rows(report: dict[str, Any], lang: str) -> list[list[Any]]:
    """(label, value) rows of the month's figures, then one row per severity and per team."""
    t, f = _lang(lang), report["figures"]
    rows: list[list[Any]] = [[t["figure"], t["value"]]]
    for key in ("opened", "closed", "cancelled", "carried_in", "open_at_end", "resolved", "reopened",
                "reopen_rate_pct", "repeat_faults"):
        rows.append([t[key], f[key]])
    rows += [
        [t["ack_pct"], f["ack"]["within_sla_pct"]], [t["ack_counted"], f["ack"]["counted"]],
        [t["ack_mean"], f["ack"]["mean_minutes"]], [t["ack_median"], f["ack"]["median_minutes"]],
        [t["fix_pct"], f["fix"]["within_sla_pct"]], [t["fix_counted"], f["fix"]["counted"]],
        [t["fix_mean"], f["fix"]["mean_minutes"]], [t["fix_median"], f["fix"]["median_minutes"]],
        [t["resident_reports"], f["resident_reports"]["total"]],
        [t["resident_tickets"], f["resident_reports"]["tickets_opened"]],
    ]
    rows.append([])
    header = [t["opened"], t["closed"], t["cancelled"], t["open_at_end"], t["ack_pct"], t["fix_pct"]]
    rows.append([t["severity"], *header])
    for severity, g in f["by_severity"].items():
        rows.append([severity, *_group_cells(g)])
    rows.append([])
    rows.append([t["team"], *header])
    for g in f["by_team"].values():
        rows.append([g["name_zh"] if lang == "zh" else g["name_en"], *_group_cells(g)])
    return rows


def _group_cells(g: dict[str, Any]) -> list[Any]:
    return [g["opened"], g["closed"], g["cancelled"], g["open_at_end"], g["ack"]["within_sla_pct"], g["fix"]["within_sla_pct"]]


def list_rows(report: dict[str, Any], lang: str) -> dict[str, list[list[Any]]]:
    """The three lists as tables (header first), keyed problems | responsibilities | rectifications."""
    t = _lang(lang)
    problems = [[t["ticket"], t["opened_at"], t["item"], t["subject"], t["fault"], t["severity"], t["source"],
                 t["status"], t["carried"]]]
    for p in report["problems"]:
        problems.append([
            p["ticket_id"], _time(p["opened_at"]), p["title"], p["subject_id"],
            p["fault_zh"] if lang == "zh" else p["fault_en"], p["severity"], p["source"], p["status"],
            _yes_no(p["carried_in"], t),
        ])
    responsibilities = [[t["ticket"], t["team"], t["role"], t["assignee"], t["dispatched_at"], t["ack_due_at"],
                         t["acknowledged_at"], t["ack_on_time"]]]
    for r in report["responsibilities"]:
        responsibilities.append([
            r["ticket_id"], r["team_zh"] if lang == "zh" else r["team_en"], t[r["role"]], r["assignee"] or "",
            _time(r["dispatched_at"]), _time(r["ack_due_at"]), _time(r["acknowledged_at"]), _yes_no(r["ack_on_time"], t),
        ])
    rectifications = [[t["ticket"], t["outcome"], t["status"], t["resolve_due_at"], t["resolved_at"], t["closed_at"],
                       t["fix_minutes"], t["held_minutes"], t["fix_on_time"], t["reopen_count"]]]
    for r in report["rectifications"]:
        rectifications.append([
            r["ticket_id"], t[f"{r['outcome']}_outcome"], r["status"], _time(r["resolve_due_at"]),
            _time(r["resolved_at"]), _time(r["closed_at"]), r["fix_minutes"], r["held_minutes"],
            _yes_no(r["fix_on_time"], t), r["reopen_count"],
        ])
    return {"problems": problems, "responsibilities": responsibilities, "rectifications": rectifications}


def _heading(report: dict[str, Any], lang: str) -> list[list[Any]]:
    t = _lang(lang)
    status = f"{t['published_at']}: {_time(report['published_at'])}" if report.get("frozen") else t["draft"]
    return [
        [f"{report['site_name']} · {t['title']} · {report['month']}"],
        [t["period"], f"{_time(report['period']['start'])} – {_time(report['period']['end'])} ({report['timezone']})"],
        [t["generated_at"], _time(report["generated_at"]), status],
    ]


def to_csv(report: dict[str, Any], lang: str = "zh") -> str:
    """One CSV: the heading, the figures, then each list under its title (UTF-8; Excel wants the BOM)."""
    t = _lang(lang)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")

    def write(rows: Sequence[Sequence[Any]]) -> None:
        writer.writerows([[safe_cell(c) for c in row] for row in rows])

    write(_heading(report, lang))
    write([[], [t["figures"]]])
    write(figure_rows(report, lang))
    for key, rows in list_rows(report, lang).items():
        write([[], [t[key]]])
        write(rows)
    return out.getvalue()


def to_xlsx(report: dict[str, Any], lang: str = "zh") -> bytes:
    """A workbook: the figures, then a sheet per list. Every text cell is stored as text, never a formula."""
    t = _lang(lang)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = t["figures"]
    _fill(sheet.append, [*_heading(report, lang), [], *figure_rows(report, lang)])
    sheet.column_dimensions["A"].width = 36
    for key, rows in list_rows(report, lang).items():
        ws = book.create_sheet(t[key])
        _fill(ws.append, rows)
        ws.freeze_panes = "A2"
        for column in "BCDEFGHIJ":
            ws.column_dimensions[column].width = 18
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _fill(append: Callable[[list[Any]], None], rows: Sequence[Sequence[Any]]) -> None:
    for row in rows:
        append([safe_cell(c) for c in row])


_CSS = """
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; font-size: .9em; margin-top: .5em; }
th, td { border: 1px solid #999; padding: .25em .45em; text-align: left; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; } .meta { color: #444; }
@media print { body { margin: 0; } h2 { page-break-after: avoid; } tr { page-break-inside: avoid; }
  section { page-break-before: always; } section:first-of-type { page-break-before: auto; } }
""".strip()


def to_html(report: dict[str, Any], lang: str = "zh") -> str:
    """A self-contained printable page: no script, no outside resources, every value escaped."""
    t = _lang(lang)
    e = html.escape
    heading = _heading(report, lang)
    parts = [
        "<!DOCTYPE html>", f'<html lang="{"zh-CN" if lang == "zh" else "en"}">', "<head>", '<meta charset="utf-8">',
        f"<title>{e(str(heading[0][0]))}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{e(str(heading[0][0]))}</h1>", f'<p class="meta">{e(t["meeting"])}</p>',
        f'<p class="meta">{e(t["period"])}: {e(str(heading[1][1]))}<br>{e(t["generated_at"])}: '
        f'{e(str(heading[2][1]))} · {e(str(heading[2][2]))}</p>',
        f"<section><h2>{e(t['figures'])}</h2>", _table(figure_rows(report, lang), percent_rows=True), "</section>",
    ]
    for key, rows in list_rows(report, lang).items():
        parts += [f"<section><h2>{e(t[key])}（{len(rows) - 1}）</h2>" if lang == "zh"
                  else f"<section><h2>{e(t[key])} ({len(rows) - 1})</h2>", _table(rows), "</section>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _cell_html(value: Any, label: str, percent: bool) -> str:
    if value is None or value == "":
        return "<td></td>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = f"{value}%" if percent and "%" in label else str(value)
        return f'<td class="n">{html.escape(text)}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(rows: Sequence[Sequence[Any]], *, percent_rows: bool = False) -> str:
    out = ["<table>"]
    header: Sequence[Any] = ()
    for i, row in enumerate(rows):
        if not row:
            out.append("</table>\n<table>")
            header = ()
            continue
        if i == 0 or not header:
            header = row
            out.append("<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in row) + "</tr>")
            continue
        label = str(row[0])
        cells = [
            _cell_html(c, label if percent_rows and j == 1 and len(row) == 2 else str(header[j]) if j < len(header) else "",
                       percent_rows)
            for j, c in enumerate(row[1:], start=1)
        ]
        out.append(f"<tr><td>{html.escape(label)}</td>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)
