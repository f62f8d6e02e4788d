"""The report as one self-contained HTML page (inline CSS, pictures as data URIs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

CSS = """
*{box-sizing:border-box}body{margin:0;font-family:"Segoe UI",Roboto,"DejaVu Sans",Arial,
sans-serif;background:#f5f7fa;color:#1f2933;line-height:1.45}
header{background:linear-gradient(120deg,#1e3a8a,#3b82f6);color:#fff;padding:28px 40px}
header h1{margin:0 0 4px;font-size:28px}header p{margin:0;opacity:.85}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px}
h2{font-size:20px;margin:36px 0 6px}h2+p.intro{margin:0 0 14px;color:#616e7c}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;
margin-top:-44px}
.kpi{background:#fff;border-radius:12px;padding:14px 18px;box-shadow:0 2px 8px #0001}
.kpi b{display:block;font-size:26px}.kpi span{color:#616e7c;font-size:13px}
.panel{background:#fff;border-radius:12px;padding:16px;box-shadow:0 2px 8px #0001}
.row{display:grid;grid-template-columns:1fr 1fr;gap:16px}
img{max-width:100%;height:auto;display:block;margin:0 auto}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px}
.card{background:#fff;border-radius:12px;box-shadow:0 2px 8px #0001;overflow:hidden}
.card .bar{height:8px}.card .body{padding:14px 18px 16px}
.card h3{margin:0;font-size:18px}.card h3::first-letter{text-transform:uppercase}
.meta{color:#616e7c;font-size:13px;margin:2px 0 10px}
.share{height:6px;background:#e4e7eb;border-radius:3px;margin-bottom:12px}
.share i{display:block;height:6px;border-radius:3px}
ul.hl{list-style:none;padding:0;margin:0 0 10px}ul.hl li{font-size:13px;padding:3px 0}
.up{color:#dc2626;font-weight:700}.down{color:#2563eb;font-weight:700}
.rules{background:#f5f7fa;border-radius:8px;padding:8px 10px;font-size:12.5px}
.rules b{font-size:12px;color:#616e7c;text-transform:uppercase;letter-spacing:.04em}
.rules div{margin-top:4px}.rules small{color:#616e7c}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{padding:6px 8px;text-align:right;border-bottom:1px solid #e4e7eb}
th:first-child,td:first-child{text-align:left}tr.best td{font-weight:700}
.tag{margin-bottom:18px}.tag h3{margin:0 0 2px}.note{color:#616e7c;font-size:12.5px}
footer{color:#9aa5b1;font-size:12px;text-align:center;padding:24px}
@media(max-width:800px){.row{grid-template-columns:1fr}}
"""


@dataclass
class SegmentCard:
    segment: int
    name: str
    size: int
    share: float
    colour: str
    highlights: list[tuple[str, float]]  # (text, standardised difference)
    rules: list[dict]  # rule, users, coverage, precision
    recall: float | None


@dataclass
class TagCard:
    name: str
    target: str
    # per model: model, accuracy, precision, recall, f1, roc_auc, threshold, shipped
    rows: list[dict]
    confusion_image: str
    values_image: str
    note: str


@dataclass
class Page:
    title: str
    subtitle: str
    kpis: list[tuple[str, str]]
    images: dict[str, str]  # sizes, projection, heatmap, scores, k_selection (data URIs)
    segments: list[SegmentCard]
    tags: list[TagCard] = field(default_factory=list)
    fidelity: float | None = None
    footer: str = ""
    # per segmentation: method (its display name), users, segments, horizon_days,
    # eta2_log_spend, eta2_churn
    validity: list[dict] = field(default_factory=list)
    # how k was chosen (criterion, chosen, best_by), its picture in images["k_selection"]
    k_selection: dict | None = None
    # segments left out (too small to publish), one line each
    notes: list[str] = field(default_factory=list)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _segment_card(card: SegmentCard) -> str:
    items = "".join(
        f'<li><span class="{"up" if z > 0 else "down"}">{"▲" if z > 0 else "▼"}</span> '
        f"{escape(text)}</li>" for text, z in card.highlights)
    rules = "".join(
        f"<div>{escape(r['rule'])}<br><small>{r['coverage']:.0%} of this segment match; "
        f"{r['precision']:.0%} of those who match belong to it</small></div>"
        for r in card.rules) or "<div>No rule of its own at this depth: the tree folds it " \
                                "into neighbouring segments.</div>"
    recall = (f"<small>The rules recover {card.recall:.0%} of its held-out users.</small>"
              if card.recall is not None else "")
    return (f'<article class="card" data-segment="{card.segment}">'
            f'<div class="bar" style="background:{card.colour}"></div><div class="body">'
            f"<h3>{escape(card.name)}</h3>"
            f'<p class="meta">Segment {card.segment} · {card.size:,} users · '
            f"{card.share:.1%} of all</p>"
            f'<div class="share"><i style="width:{card.share:.1%};background:{card.colour}">'
            f"</i></div><ul class=\"hl\">{items}</ul>"
            f'<div class="rules"><b>Rule of thumb</b>{rules}{recall}</div></div></article>')


def _metric(value) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def _tag_card(card: TagCard) -> str:
    best = max((r["f1"] for r in card.rows), default=None)
    body = "".join(
        f'<tr class="{"best" if r["f1"] == best else ""}"><td>{escape(r["model"])}'
        + (" (shipped)" if r.get("shipped") else "") + "</td>"
        + "".join(f"<td>{_metric(r[m])}</td>"
                  for m in ("accuracy", "precision", "recall", "f1", "roc_auc"))
        + f"<td>{_metric(r['threshold'])}</td></tr>" for r in card.rows)
    return (f'<section class="panel tag" data-tag="{escape(card.name)}">'
            f"<h3>{escape(card.name)}</h3><p class=\"note\">{escape(card.note)}</p>"
            "<table><tr><th>model (test users)</th><th>accuracy</th><th>precision</th>"
            "<th>recall</th><th>F1</th><th>ROC AUC</th><th>threshold</th></tr>"
            f"{body}</table>"
            f'<div class="row"><div>{_img(card.confusion_image, card.name + " confusion")}'
            f"</div><div>{_img(card.values_image, card.name + ' values')}</div></div>"
            "</section>")


def _validity(rows: list[dict]) -> str:
    if not rows:
        return ""
    horizon, users = int(rows[0]["horizon_days"]), int(rows[0]["users"])
    body = "".join(
        f"<tr><td>{escape(r['method'])}</td><td>{int(r['segments'])}</td>"
        f"<td>{r['eta2_log_spend']:.1%}</td><td>{r['eta2_churn']:.1%}</td></tr>" for r in rows)
    return (f"<h2>Predictive validity: share of next-{horizon}-day behaviour explained by the "
            f"segments</h2><p class=\"intro\">For the {users:,} segmented users active before "
            "the cut-off: the share of the variance of their spend (log) and of churn (no "
            f"purchase) in the {horizon} days after it that lies between segments (η²), beside "
            "two classic baselines from recency, frequency and spend.</p>"
            "<div class=\"panel\"><table><tr><th>segmentation</th><th>segments</th>"
            f"<th>spend</th><th>churn</th></tr>{body}</table></div>")


def _k_selection(page: Page) -> str:
    choice = page.k_selection
    if not choice:
        return ""
    chosen = f"k = {choice['chosen']}, chosen by {choice['criterion'].replace('_', '-')}"
    others = ", ".join(f"{name.replace('_', '-')} {k}" for name, k in choice["best_by"].items())
    return ("<h2>How many segments</h2><p class=\"intro\">"
            f"{escape(chosen)} among the numbers of segments tried. Each criterion's curve "
            f"against k, with the k it would pick marked ({escape(others)}).</p>"
            f'<div class="panel">{_img(page.images["k_selection"], "choice of k")}</div>')


def render(page: Page) -> str:
    """The whole HTML document."""
    kpis = "".join(f'<div class="kpi"><b>{escape(v)}</b><span>{escape(k)}</span></div>'
                   for k, v in page.kpis)
    cards = "".join(_segment_card(c) for c in page.segments)
    fidelity = (f" A decision tree on the original features agrees with the segments for "
                f"{page.fidelity:.0%} of held-out users." if page.fidelity is not None else "")
    tags = ""
    if page.tags:
        tags = ("<h2>Profile tags</h2><p class=\"intro\">Predicted for every user by a deep "
                "network trained with Horovod or by a logistic regression, whichever scores "
                "better on the validation users (marked shipped); both are judged on users "
                "held out from training next to always guessing the most common value. "
                "F1 is of the positive class for yes/no tags and the average over values "
                "(macro) otherwise.</p>"
                f'<div class="panel">{_img(page.images["scores"], "F1 by tag")}</div><br>'
                + "".join(_tag_card(t) for t in page.tags))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title><style>{CSS}</style></head>
<body><header><h1>{escape(page.title)}</h1><p>{escape(page.subtitle)}</p></header>
<main><div class="kpis">{kpis}</div>
<h2>Who our users are</h2><p class="intro">Segment sizes, and every user placed on a map of
their learned profile: users close together behave alike.</p>
<div class="row"><div class="panel">{_img(page.images["sizes"], "segment sizes")}</div>
<div class="panel">{_img(page.images["projection"], "users by segment")}</div></div>
<h2>What sets each segment apart</h2><p class="intro">Red: well above the average user;
blue: well below. Each cell shows the segment's average in the feature's own unit.</p>
<div class="panel">{_img(page.images["heatmap"], "distinguishing features")}</div>
<h2>The segments</h2><p class="intro">Each segment's most distinctive traits and a rule of
thumb to recognise its members.{escape(fidelity)}</p>
{"".join(f'<p class="note">{escape(n)}</p>' for n in page.notes)}
<div class="cards">{cards}</div>
{_k_selection(page)}
{_validity(page.validity)}
{tags}
</main><footer>{escape(page.footer)}</footer></body></html>
"""
