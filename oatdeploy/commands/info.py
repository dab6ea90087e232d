"""`oatdeploy info`: what a deployment holds, as a table, JSON, CSV or Markdown. Torch-free.

Per variant: λ, width, SA/RA (and those of each verified reduced precision), parameters and FLOPs, the
quantized models and TensorRT engines built for it, and the latency measured on every device that
profiled it (one column per device key).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click

from oatdeploy.eval_files import describe_evaluation

FORMATS = ("table", "json", "csv", "md")
TEXT = {"variant", "mode", "attack", "quantized", "engines"}  # left-aligned columns; numbers go right


def summary(folder: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's facts a reader asks for, without file hashes and verification data."""
    variants = []
    for e in manifest["variants"]:
        variants.append({
            "id": e["id"], "lambda": e["lambda"], "width": e["width"], "mode": e.get("mode"), "onnx": e["onnx"],
            "params": e.get("params"), "flops": e.get("flops"), "metrics": e.get("metrics") or {},
            "precision_metrics": e.get("precision_metrics") or {}, "latency": e.get("latency") or {},
            "quantized": {p: q["onnx"] for p, q in sorted((e.get("quantized") or {}).items())},
            "engines": [{k: g.get(k) for k in ("path", "precision", "device", "trt_version", "batch_profile")}
                        for g in e.get("engines") or []],
        })
    return {"deployment": str(folder), "created": manifest.get("created"), "model": manifest.get("model", {}),
            "threat_model": manifest.get("threat_model", {}), "metrics_source": manifest.get("metrics_source", {}),
            "source": manifest.get("source", {}),
            "profiles": sorted({key for v in variants for key in v["latency"]}), "variants": variants}


def engine_label(engine: dict[str, Any]) -> str:
    batch = engine.get("batch_profile") or {}
    return (f"{engine.get('precision')} {engine.get('device')} TensorRT {engine.get('trt_version')} "
            f"b{batch.get('min', '?')}-{batch.get('max', '?')}")


def rows(info: dict[str, Any], raw: bool) -> list[dict[str, Any]]:
    """One flat row per variant, latency last (one p50 and one p95 column per device key).

    `raw` keeps numbers as they are (CSV); otherwise they are rounded for reading.
    """
    precisions = sorted({p for v in info["variants"] for p in v["precision_metrics"]})
    intervals = [(k, name) for k, name in (("clean_ci95", "SA"), ("robust_ci95", "RA"))
                 if any(v["metrics"].get(k) for v in info["variants"])]

    def acc(value: float | None) -> Any:
        return value if raw or value is None else f"{value:.3f}"

    out = []
    for v in info["variants"]:
        m = v["metrics"]
        row: dict[str, Any] = {
            "variant": v["id"], "lambda": v["lambda"], "width": v["width"], "mode": v["mode"],
            "SA": acc(m.get("clean_acc")), "RA": acc(m.get("robust_acc")), "attack": m.get("attack"),
            **{col: val for k, name in intervals for col, val in interval_cells(name, m.get(k), raw).items()},
            "images": m.get("samples"), "params": v["params"],
            "flops" if raw else "MFLOPs": v["flops"] if raw or v["flops"] is None else f"{v['flops'] / 1e6:.1f}",
        }
        for p in precisions:
            pm = v["precision_metrics"].get(p) or {}
            row[f"SA {p}"], row[f"RA {p}"] = acc(pm.get("clean_acc")), acc(pm.get("robust_acc"))
        row["quantized"] = " ".join(v["quantized"])
        row["engines"] = "; ".join(engine_label(e) for e in v["engines"])
        for key in info["profiles"]:
            lat = v["latency"].get(key) or {}
            for q in ("p50", "p95"):
                value = lat.get(f"{q}_ms")
                row[f"{q} ms {key}"] = value if raw or value is None else f"{value:.3f}"
        out.append(row)
    return out


def interval_cells(name: str, ci: list[float] | None, raw: bool) -> dict[str, Any]:
    """A 95 % interval as two numbers (CSV) or one `low–high` cell."""
    low, high = ci if ci else (None, None)
    if raw:
        return {f"{name} ci95 low": low, f"{name} ci95 high": high}
    return {f"{name} 95% CI": None if ci is None else f"{low:.3f}–{high:.3f}"}


def as_text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def format_csv(info: dict[str, Any]) -> str:
    table = rows(info, raw=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buf.getvalue().rstrip("\n")


def format_markdown(info: dict[str, Any]) -> str:
    table = rows(info, raw=False)

    def cells(values: list[Any]) -> str:
        return "| " + " | ".join(as_text(v).replace("|", "\\|") for v in values) + " |"

    lines = [cells(list(table[0])), "|" + "---|" * len(table[0])]
    return "\n".join(lines + [cells(list(r.values())) for r in table])


def aligned(table: list[dict[str, Any]]) -> list[str]:
    """Columns padded to their widest cell; text left, numbers right."""
    heads = list(table[0])
    width = {h: max(len(h), *(len(as_text(r[h])) for r in table)) for h in heads}

    def line(values: dict[str, Any]) -> str:
        return "  ".join(as_text(values[h]).ljust(width[h]) if h in TEXT else as_text(values[h]).rjust(width[h])
                         for h in heads).rstrip()

    return [line({h: h for h in heads}), "-" * len(line({h: h for h in heads})), *(line(r) for r in table)]


def format_table(info: dict[str, Any]) -> str:
    """A header, the variants, then each device profile's p50/p95 (latency keys are long: numbered here)."""
    model, threat, source = info["model"], info["threat_model"], info["metrics_source"]
    modes = sorted({str(v["mode"]) for v in info["variants"]})
    lines = [f"{info['deployment']}: {model.get('arch', '?')} on {model.get('dataset', '?')}, input "
             f"{model.get('input_shape')}, {model.get('num_classes')} classes, {len(info['variants'])} variants "
             f"({', '.join(modes)}), exported {info.get('created') or '?'}",
             f"threat model: {threat.get('norm', '?')} eps {threat.get('eps', '?')}; SA/RA "
             + (f"from {source['origin']} ({describe_evaluation(source)})" if source.get("origin") else "not measured"),
             ""]
    table = rows(info, raw=False)
    latency_heads = [h for h in table[0] if h.startswith(("p50 ms ", "p95 ms "))]
    lines += aligned([{h: v for h, v in r.items() if h not in latency_heads} for r in table])
    if not info["profiles"]:
        return "\n".join([*lines, "", "latency: not profiled on any device yet (`oatdeploy profile DEPLOY`)"])
    lines += ["", "latency p50 / p95 ms, per device profile:"]
    lines += [f"  [{i}] {key}" for i, key in enumerate(info["profiles"], 1)]
    latency = [{"variant": r["variant"], **{f"[{i}]": f"{as_text(r[f'p50 ms {key}'])} / {as_text(r[f'p95 ms {key}'])}"
                                             for i, key in enumerate(info["profiles"], 1)}} for r in table]
    return "\n".join(lines + aligned(latency))


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="csv and md give one row per variant, for reports.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--no-verify", is_flag=True, help="Skip the sha256 check of every file (to inspect a damaged copy).")
def info(deploy: str, fmt: str, as_json: bool, no_verify: bool) -> None:
    """Show what DEPLOY holds: variants with SA/RA and cost, every device's latency, engines, quantized models."""
    from oatdeploy.runtime.manifest import load_manifest

    facts = summary(deploy, load_manifest(deploy, check_sha256=not no_verify))  # a whole-folder audit
    fmt = "json" if as_json else fmt
    if fmt == "json":
        click.echo(json.dumps(facts, indent=2))
    else:
        click.echo({"table": format_table, "csv": format_csv, "md": format_markdown}[fmt](facts))
