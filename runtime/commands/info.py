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

from oatdeploy.runtime.commands.options import FORMATS, RENAMED_JSON, Command, warn_renamed
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.folder import check_file, load_manifest
from oatdeploy.runtime.manifest import Engine, Manifest

REPORTS = (*FORMATS, "csv", "md")  # info's formats: those of every command, and two for reports
TEXT = {"variant", "mode", "attack", "quantized", "engines"}  # left-aligned columns; numbers go right


HIDDEN = {"sha256", "verification", "adv_examples", "lam_index"}  # file hashes and export-time checks


def summary(folder: str | Path, manifest: Manifest) -> dict[str, Any]:
    """The manifest's facts a reader asks for (`info --format json`), without file hashes and verification data."""
    variants = []
    for v in manifest.variants:
        facts = {k: x for k, x in v.to_json().items() if k not in HIDDEN}
        facts["quantized"] = {p: q.onnx for p, q in sorted(v.quantized.items())}
        facts["engines"] = [{k: x for k, x in e.to_json().items() if k not in ("sha256", "calibration")}
                            for e in v.engines]
        variants.append(facts)
    top = manifest.to_json()
    return {"deployment": str(folder), **{k: top.get(k) for k in ("created", "model", "threat_model")},
            "metrics_source": top.get("metrics_source") or {}, "source": top["source"],
            "profiles": profiles(manifest), "variants": variants}


def profiles(manifest: Manifest) -> list[str]:
    """Every device key some variant was profiled under."""
    return sorted({key for v in manifest.variants for key in v.latency})


def engine_label(e: Engine) -> str:
    batch = f"b{e.batch_profile.min}-{e.batch_profile.max}" if e.batch_profile else "b?-?"
    return f"{e.precision} {e.device} TensorRT {e.trt_version} {batch}"


def rows(manifest: Manifest, raw: bool) -> list[dict[str, Any]]:
    """One flat row per variant, latency last (one p50 and one p95 column per device key).

    `raw` keeps numbers as they are (CSV); otherwise they are rounded for reading.
    """
    precisions = sorted({p for v in manifest.variants for p in v.precision_metrics})
    intervals = [(kind, name) for kind, name in (("clean", "SA"), ("robust", "RA"))
                 if any(v.metrics.interval(kind) for v in manifest.variants)]
    keys = profiles(manifest)

    def acc(value: float | None) -> Any:
        return value if raw or value is None else f"{value:.3f}"

    out = []
    for v in manifest.variants:
        m = v.metrics
        row: dict[str, Any] = {
            "variant": v.id, "lambda": v.lam, "width": v.width, "mode": v.mode,
            "SA": acc(m.clean_acc), "RA": acc(m.robust_acc), "attack": m.attack,
            **{col: val for kind, name in intervals
               for col, val in interval_cells(name, m.interval(kind), raw).items()},
            "images": m.samples, "params": v.params,
            "flops" if raw else "MFLOPs": v.flops if raw or v.flops is None else f"{v.flops / 1e6:.1f}",
        }
        for p in precisions:
            pm = v.precision_metrics.get(p)
            row[f"SA {p}"], row[f"RA {p}"] = (acc(pm.clean_acc), acc(pm.robust_acc)) if pm else (None, None)
        row["quantized"] = " ".join(sorted(v.quantized))
        row["engines"] = "; ".join(engine_label(e) for e in v.engines)
        for key in keys:
            lat = v.latency.get(key)
            for q, value in (("p50", lat.p50_ms if lat else None), ("p95", lat.p95_ms if lat else None)):
                row[f"{q} ms {key}"] = value if raw or value is None else f"{value:.3f}"
        out.append(row)
    return out


def interval_cells(name: str, ci: tuple[float, float] | None, raw: bool) -> dict[str, Any]:
    """A 95 % interval as two numbers (CSV) or one `low–high` cell."""
    low, high = ci if ci else (None, None)
    if raw:
        return {f"{name} ci95 low": low, f"{name} ci95 high": high}
    return {f"{name} 95% CI": None if ci is None else f"{low:.3f}–{high:.3f}"}


def as_text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def format_csv(manifest: Manifest) -> str:
    table = rows(manifest, raw=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buf.getvalue().rstrip("\n")


def format_markdown(manifest: Manifest) -> str:
    table = rows(manifest, raw=False)

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


def format_table(folder: str | Path, manifest: Manifest) -> str:
    """A header, the variants, then each device profile's p50/p95 (latency keys are long: numbered here)."""
    model, threat, source = manifest.model, manifest.threat_model, manifest.metrics_source
    modes = sorted({v.mode for v in manifest.variants})
    lines = [f"{folder}: {model.arch or '?'} on {model.dataset or '?'}, input {model.input_shape}, "
             f"{model.num_classes} classes, {len(manifest.variants)} variants ({', '.join(modes)}), exported "
             f"{manifest.created or '?'}",
             f"threat model: {threat.norm or '?'} eps {threat.eps if threat.eps is not None else '?'}; SA/RA "
             + (f"from {source.origin} ({source.describe()})" if source and source.origin else "not measured"),
             ""]
    table = rows(manifest, raw=False)
    keys = profiles(manifest)
    latency_heads = [h for h in table[0] if h.startswith(("p50 ms ", "p95 ms "))]
    lines += aligned([{h: v for h, v in r.items() if h not in latency_heads} for r in table])
    if not keys:
        return "\n".join([*lines, "", "latency: not profiled on any device yet (`oatdeploy profile DEPLOY`)"])
    lines += ["", "latency p50 / p95 ms, per device profile:"]
    lines += [f"  [{i}] {key}" for i, key in enumerate(keys, 1)]
    latency = [{"variant": r["variant"], **{f"[{i}]": f"{as_text(r[f'p50 ms {key}'])} / {as_text(r[f'p95 ms {key}'])}"
                                             for i, key in enumerate(keys, 1)}} for r in table]
    return "\n".join(lines + aligned(latency))


class ReportFormat(click.Choice):
    """REPORTS, and `table`, the old name of `text`, with a warning."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "table":
            warn_renamed("--format table", "--format text")
            return "text"
        return super().convert(value, param, ctx)


@click.command(cls=Command, renamed=RENAMED_JSON)
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=ReportFormat(REPORTS), default="text", show_default=True,
              help="text for reading, json for programs; csv and md give one row per variant, for reports.")
@click.option("--no-verify", is_flag=True, help="Skip the sha256 check of every file (to inspect a damaged copy).")
def info(deploy: str, fmt: str, no_verify: bool) -> None:
    """Show what DEPLOY holds: variants with SA/RA and cost, every device's latency, engines, quantized models."""
    manifest = load_manifest(deploy, check_sha256=False)
    if not no_verify:  # a whole-folder audit
        try:
            for rel, digest in manifest.artifacts():
                check_file(deploy, rel, digest)
        except ArtifactError as e:
            raise ArtifactError(f"{e}; to look at the deployment as it is: oatdeploy info {deploy} --no-verify") \
                from None
    if fmt == "json":
        click.echo(json.dumps(summary(deploy, manifest), indent=2))
    elif fmt == "text":
        click.echo(format_table(deploy, manifest))
    else:
        click.echo({"csv": format_csv, "md": format_markdown}[fmt](manifest))
