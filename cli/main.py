"""``zoo``: pull, list, inspect, verify and mirror pretrained models.

Exit codes: 0 success; 1 unexpected error; 2 usage or configuration error; 3 invalid registry;
4 unknown model (or, for ``verify``, a named model is not cached); 5 offline and not cached;
6 download failed; 7 checksum mismatch (``verify``: a blob was quarantined or a derived file rebuilt); 8 cache unusable
(read-only, no space); 9 invalid model file; 10 stage error; 11 conformance failures; 12 nodes disagree
(`check-model`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from dataclasses import asdict
from typing import Any, Sequence

import zoo
from zoo import log
from zoo.errors import ZooError, capped
from zoo.hub.presets import DETECTOR_FAMILIES
from zoo.version import __version__


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


DESCRIPTION_WIDTH = 80  # `zoo ls` shows the start of each description; `zoo info` and --json show it whole


def _cut(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (a registry's description can be long)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _mib(n: int | None) -> str:
    """A size people read: 1 B, 12.3 KiB, 13.6 MiB, 1.2 GiB (a 1-byte file is not "0.0 MiB")."""
    if n is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def cmd_pull(args: argparse.Namespace) -> int:
    paths = {name: str(zoo.pull(name, progress=False if args.quiet else None)) for name in args.names}
    if args.json:
        _print_json(paths)
    else:
        for name, path in paths.items():
            print(path if len(paths) == 1 else f"{name}\t{path}")
    return 0


def _size(text: str) -> int:
    """A size in bytes: 123, 100K, 20MB, 1.5GiB (K/M/G/T = powers of 1024)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 5000000, 100MB or 2GiB")
    return int(float(m[1]) * 1024 ** " KMGT".index(m[2].upper() or " "))


def cmd_ls(args: argparse.Namespace) -> int:
    entries = zoo.models(cached=args.cached, task=args.task, search=" ".join(args.search or []) or None,
                         license=args.license, max_bytes=args.max_size)
    cached = {e.sha256 for e in (entries if args.cached else zoo.models(cached=True))}
    if args.json:
        _print_json([e.to_dict() | {"origin": e.origin, "cached": e.sha256 in cached} for e in entries])
        return 0
    import shutil

    rows = [[e.name, _cut(",".join(e.aliases), 24), e.task, _mib(e.total_bytes), "yes" if e.sha256 in cached else "",
             e.description] for e in entries]
    header = ["NAME", "ALIASES", "TASK", "SIZE", "CACHED", "DESCRIPTION"]
    # one screen line per model: the description gets what the other columns leave (100 columns when piped)
    used = sum(max(len(r[i]) for r in [header, *rows]) + 2 for i in range(5))
    room = max(20, min(DESCRIPTION_WIDTH, shutil.get_terminal_size((100, 24)).columns - used))
    _table([[*r[:5], _cut(r[5], room)] for r in rows], header)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    data = zoo.info(args.name)
    if args.json:
        _print_json(data)
        return 0
    for key in ("name", "aliases", "description", "task", "license", "sha256", "bytes", "origin", "cached", "path"):
        value = data.get(key)
        print(f"{key:12} {', '.join(value) if isinstance(value, list) else value}")
    print(f"{'sources':12} " + "\n             ".join(data["sources"]))
    for key in ("input", "output", "preprocess"):  # optional: many entries (text models) have no image input
        if data.get(key) is not None or key == "preprocess":
            print(f"{key:12} {json.dumps(data.get(key))}")
    for role, spec in (data.get("files") or {}).items():
        print(f"{role:12} sha256 {spec['sha256']}" + (f", {spec['bytes']:,} bytes" if spec.get("bytes") else ""))
    if data.get("external_data"):
        print(f"{'weights':12} {len(data['external_data'])} external data files, {data['total_bytes']:,} bytes in all:")
        for location, spec in data["external_data"].items():
            print(f"{'':12} {location}: sha256 {spec['sha256']}" + (f", {spec['bytes']:,} bytes" if spec.get("bytes") else ""))
    label_set = data.get("label_set")
    if label_set and "count" in label_set:
        print(f"{'labels':12} {label_set['name']} ({label_set['count']:,} names: {', '.join(label_set['first'])}, ...)")
    elif label_set:
        print(f"{'labels':12} {label_set.get('error') or json.dumps(label_set)}")
    if data.get("available_cuts"):
        print("cuts (cut=K drops the last K layers; `zoo pull` first if this list is missing):")
        rows = [[str(c["index"]), c["tensor"], c["op"] or "(full model)",
                 "x".join("N" if d is None else str(d) for d in c["shape"]), c["dtype"] + (" (dequantized)" if c["quantized"] else ""),
                 str(c["feature_length"])] for c in data["available_cuts"]]
        _table(rows, ["CUT", "TENSOR", "DROPS", "SHAPE", "DTYPE", "FEATURES"])
    elif not data.get("cached"):
        print(f"cuts         run `zoo pull {data['name']}` to list the layer cuts")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    results = zoo.verify(args.names or None, progress=False if args.quiet else None)
    if args.json:
        _print_json([r.to_dict() for r in results])
    else:
        if not results:
            print("the cache is empty")
        for r in results:
            why = f"  ({r.reason})" if r.reason else ""
            what = ",".join(r.names) or "(no name)"
            kind = "" if r.kind == "model" else f"{r.kind} of " if r.kind != "derived record" else "derived record "
            print(f"{r.status:12} {r.sha256[:16]}  {kind}{what}{why}")
    if any(r.status in ("quarantined", "corrupt", "rebuilt") for r in results):
        return 7
    if any(r.status == "missing" for r in results):
        return 4
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    removed = {name: zoo.remove(name) for name in args.names}
    if args.json:
        _print_json([{"name": name, "removed": was} for name, was in removed.items()])
        return 0
    for name, was in removed.items():
        print(f"removed {name}" if was else f"{name} was not cached")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    if args.action == "dir":
        if args.json:
            _print_json({"dir": str(zoo.cache_dir())})
        else:
            print(zoo.cache_dir())
    elif args.action == "size":
        sizes = zoo.cache_size()
        if args.json:
            _print_json(sizes)
        else:
            for key, value in sizes.items():
                print(f"{key:11} {_mib(value)}")
    else:
        report = zoo.prune_cache()
        if args.json:
            _print_json(asdict(report))
        else:
            print(
                f"removed {report.temp_files} unfinished downloads, {report.stale_locks} stale locks, "
                f"{report.quarantined} quarantined entries, {report.foreign_optimized} optimised files and "
                f"{report.stale_records} derived records no longer used (other machines or runtimes, models "
                f"no longer cached); freed {_mib(report.bytes_freed)}"
            )
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    recipe = args.preprocess
    if recipe and recipe.lstrip().startswith("{"):
        try:
            recipe = json.loads(recipe)
        except ValueError as exc:
            from zoo.errors import ConfigError

            raise ConfigError(f"--preprocess is not valid JSON: {exc}") from None
    entry = zoo.add(
        args.file,
        name=args.name,
        preprocess=recipe,
        description=args.description,
        license=args.license,
        labels=args.labels,
        aliases=args.alias or (),
        task=args.task,
        replace=args.replace,
        detector=args.detector,
    )
    if args.json:
        _print_json(entry.to_dict() | {"origin": entry.origin})
    else:
        print(f"added {entry.name} (sha256 {entry.sha256}) to {entry.origin}")
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    entries = zoo.export_mirror(args.dir, args.names or None)
    if args.json:
        _print_json([e.name for e in entries])
    else:
        print(f"exported {len(entries)} models to {args.dir}")
        print("serve it and set ZOO_MIRRORS=<its URL> and ZOO_REGISTRY=<its URL>/registry.json")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from zoo import doctor
    from zoo.config import settings

    checks = doctor.run(settings())
    if args.json:
        _print_json([c.to_dict() for c in checks])
    else:
        for c in checks:
            print(f"{'ok ' if c.ok else 'BAD'}  {c.name:24} {c.detail}")
    return 0 if all(c.ok for c in checks) else 1


def cmd_stages(args: argparse.Namespace) -> int:
    found = zoo.stages()
    if args.json:
        _print_json([s.to_dict() for s in found])
        return 0
    for s in found:
        origin = f"{s.distribution} {s.version}".strip() or s.plugin
        if s.broken:
            print(f"{s.name:18} BROKEN  [{origin}]")
            print(f"{'':18} {s.broken}")
            continue
        print(f"{s.name:18} {s.class_path}  [{origin}]")
        print(f"{'':18} {s.doc}")
        for p in s.params:
            print(f"{'':20} {p['name']}: {p['type']} = {p['default']!r}  {p['doc']}")
    return 0


def _mutation_score(spark, names: list[str], args: argparse.Namespace, started: float) -> int:
    """``zoo check --mutate``: the kit against defective variants of the named stages (zoo.testing.mutants)."""
    import time

    from zoo.testing.mutants import score

    def show(result) -> None:
        if not args.json:
            verdict = f"killed by {', '.join(result.killed_by)}" if result.killed else "SURVIVED"
            print(f"  {result.mutant.operator:36} {verdict}  ({result.seconds:.0f} s)", flush=True)

    report = score(spark, names, fuzz_examples=args.fuzz_examples, on_result=show)
    if args.json:
        _print_json(report.to_dict() | {"seconds": round(time.perf_counter() - started, 1)})
    else:
        print(f"{report.killed} of {report.total} mutants killed"
              + (f"; survivors: {', '.join(m.name for m in report.survivors)}" if report.survivors else "")
              + f" ({time.perf_counter() - started:.0f} s)")
    return 11 if report.survivors else 0


def cmd_check(args: argparse.Namespace) -> int:
    import os
    import sys as _sys
    import time

    from pyspark.sql import SparkSession

    from zoo.plugins.stage_registry import canonical_name, registered
    from zoo.testing import CHECKS, prefer_jvm_options, run_checks

    found = registered(include_broken=True)
    known = sorted(found)
    names = [canonical_name(n, found) for n in args.names] or known
    unknown = [n for n in names if n not in known]
    if unknown:  # before starting Spark: a typo should not cost a JVM start
        from zoo.errors import StageError

        raise StageError(f"unknown stage {unknown[0]!r}; registered: {', '.join(known)}")
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else list(CHECKS)
    wrong = [c for c in checks if c not in CHECKS]
    if wrong:  # also before starting Spark
        from zoo.errors import StageError

        raise StageError(f"unknown check {wrong[0]!r}; choose from {', '.join(CHECKS)}")
    os.environ.setdefault("PYSPARK_PYTHON", _sys.executable)
    prefer_jvm_options()  # C1-only JIT for this short-lived driver (zoo.testing.JVM_OPTIONS says why)
    from zoo.java import ensure_java

    ensure_java()
    started = time.perf_counter()
    spark = (
        SparkSession.builder.master(args.master).appName("zoo-check")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").config("spark.log.level", "ERROR")
        .config("spark.sql.shuffle.partitions", "4").getOrCreate()
    )
    log.quiet_spark(spark)

    def show(result) -> None:
        if not args.json:
            mark = "ok  " if result.ok else "FAIL"
            where = f"{result.check} [example {result.example}]" if result.example is not None else result.check
            print(f"  {mark} {where:27} {result.seconds:6.1f} s" + (f"  {result.message}" if not result.ok else ""),
                  flush=True)

    if args.mutate:
        try:
            return _mutation_score(spark, names, args, started)
        finally:
            spark.stop()
    results = []
    try:
        for name in names:
            if not args.json:
                print(name, flush=True)
            results.extend(run_checks(name, spark, checks=checks, fuzz_examples=args.fuzz_examples, on_result=show))
    finally:
        spark.stop()
    failed = sorted({r.stage for r in results if not r.ok})
    if args.json:
        _print_json({"stages": {n: [r.to_dict() for r in results if r.stage == n] for n in names},
                     "failed": failed, "seconds": round(time.perf_counter() - started, 1)})
    else:
        print(f"{len(names) - len(failed)} of {len(names)} stages conform"
              + (f"; failing: {', '.join(failed)}" if failed else "")
              + f" ({time.perf_counter() - started:.0f} s)")
    return 11 if failed else 0


def _timing(summary: dict) -> str:
    """Where the time went: checks, Spark's start, the work; img/s only where it means something."""
    rate = summary["images_per_second"]
    speed = f"{rate} img/s" if rate is not None else "too small a job for an img/s figure"
    return (f"{summary['seconds']:.1f} s ({speed}); before that {summary['checks_seconds']:.1f} s checking the "
            f"input and model, {summary['startup_seconds']:.1f} s starting Spark")


def cmd_featurize(args: argparse.Namespace) -> int:
    from zoo.cli.featurize import run

    summary = run(args)
    if args.json:
        _print_json(summary)
    else:
        outcome = {"keep": "kept with the reason in `error`", "skip": "skipped"}.get(summary["handle_invalid"], "")
        step = summary.get("incremental")
        kept = f" ({step['kept']:,} rows kept unchanged)" if step else ""
        print(f"{summary['found']:,} files found -> {summary['output']}: {summary['featurized']:,} featurized{kept}, "
              f"{summary['failed']:,} failed{f' ({outcome})' if summary['failed'] else ''} in {_timing(summary)}")
        if step:
            print(f"incremental: {step['kept']:,} rows kept, {step['featurized']:,} files featurized, "
                  f"{step['deleted']:,} rows dropped ({step['reason']})")
        from zoo.cluster.delivery import is_local

        for line in [] if is_local(args.master) else summary["nodes"]:  # one node on a local master: nothing to say
            print(f"  {line}", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from zoo.cli.featurize import run

    summary = run(args, predict=True)
    if args.json:
        _print_json(summary)
        return 0
    if summary["predictions"] is not None:  # the top K of each file: its first line names the file
        rows = []
        for p in summary["predictions"]:
            name = p["path"].removeprefix("file:")
            if p["error"] is not None:
                rows.append([name, "", f"(failed: {p['error']})", ""])
                continue
            for rank, top in enumerate(p["top"], 1):
                rows.append([name if rank == 1 else "", str(rank), top["label"], f"{top['score']:.3f}"])
        _table(rows, ["FILE", "RANK", "LABEL", "SCORE"])
    target = f" -> {summary['output']}" if summary["output"] else ""
    print(f"{summary['found']:,} files found{target}: {summary['predicted']:,} classified, {summary['failed']:,} failed "
          f"in {_timing(summary)}", file=sys.stderr if not target else sys.stdout)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from zoo.cli.featurize import run

    summary = run(args, detect=True)
    if args.draw and summary["detections"] is None:  # written to parquet: read back what was found
        import pyarrow.parquet as pq

        table = pq.read_table(summary["output"], columns=["path", "detections"]).to_pylist()
        summary["detections"] = [{"path": r["path"], "detections": r["detections"]} for r in table]
    drawn = _draw(summary, args.input, args.draw) if args.draw else 0
    if args.json:
        _print_json(summary | {"drawn": drawn} if args.draw else summary)
        return 0
    if summary["detections"] is not None and not summary["output"]:
        rows = []
        for p in summary["detections"]:
            name = p["path"].removeprefix("file:")
            if p.get("error") is not None:
                rows.append([name, "", f"(failed: {p['error']})", "", ""])
            elif not p["detections"]:
                rows.append([name, "", "(nothing found)", "", ""])
            for k, d in enumerate(p["detections"] or []):
                box = f"{d['x0']:.0f},{d['y0']:.0f},{d['x1']:.0f},{d['y1']:.0f}"
                rows.append([name if k == 0 else "", str(k + 1), d["label"] or str(d["classIndex"]),
                             f"{d['score']:.3f}", box])
        _table(rows, ["FILE", "#", "LABEL", "SCORE", "BOX (x0,y0,x1,y1)"])
    target = f" -> {summary['output']}" if summary["output"] else ""
    boxes = sum(len(p["detections"] or []) for p in summary["detections"] or [])
    found = f"{boxes:,} boxes in " if summary["detections"] is not None else ""
    drew = f"; {drawn:,} drawn into {args.draw}" if args.draw else ""
    print(f"{summary['found']:,} files found{target}: {found}{summary['detected']:,} images, {summary['failed']:,} "
          f"failed in {_timing(summary)}{drew}", file=sys.stderr if not target else sys.stdout)
    return 0


def _draw(summary: dict, root: str, folder: str) -> int:
    """Each image with its boxes drawn, as JPEG under ``folder`` by its path relative to ``root``."""
    import cv2
    import numpy as np

    from zoo.runtime.detection import draw

    base = Path(root).expanduser().resolve()
    base = base if base.is_dir() else base.parent
    out = Path(folder).expanduser()
    written = 0
    for p in summary["detections"] or []:
        if p["detections"] is None:
            continue
        source = Path(p["path"].removeprefix("file:"))
        pixels = cv2.imdecode(np.fromfile(str(source), np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            continue
        try:
            relative = source.resolve().relative_to(base)
        except ValueError:
            relative = Path(source.name)
        target = (out / relative).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", draw(pixels, p["detections"]), [cv2.IMWRITE_JPEG_QUALITY, 90])
        target.write_bytes(data.tobytes())
        written += 1
    return written


def cmd_docs(args: argparse.Namespace) -> int:
    """Where the documentation pages are installed (the reference the README links to)."""
    from importlib.resources import files

    folder = files("zoo.docs")
    pages = sorted(p.name for p in folder.iterdir() if p.name.endswith(".md"))
    if args.json:
        _print_json({"folder": str(folder), "pages": pages})
    else:
        print(f"sparkzoo's documentation (Markdown) is in {folder}:")
        for page in pages:
            print(f"  {page}")
    return 0


def cmd_check_model(args: argparse.Namespace) -> int:
    from zoo.cli.featurize import _conf_pairs, _cut, _spark, check_spark_libraries
    from zoo.consistency import check_model
    from zoo.errors import InputError
    from zoo.log import quiet_spark

    conf = _conf_pairs(args.conf or [])  # what can be checked without Spark, before its 25-40 s start
    check_spark_libraries()
    zoo.cut(args.model, _cut(args.cut))  # a mistyped model or an impossible cut
    if args.inputs and not zoo.list_images(args.inputs):
        raise InputError(f"--inputs {args.inputs!r} holds no files")
    spark = _spark(args.master, conf)
    quiet_spark(spark)
    try:  # a node that cannot run the check (no sparkzoo in its Python, ...): zoo's one-paragraph error
        with zoo.cluster.watch(spark):
            reports, tolerance = check_model(spark, args.model, cut=args.cut, inputs=args.inputs,
                                             tolerance=args.tolerance, fast_decode=args.fast_decode,
                                             preprocess=args.preprocess, reference=args.reference, write_to=args.write_reference,
                                             device=args.device)
    finally:
        spark.stop()
    failed = [r for r in reports if not r.ok]
    if args.json:
        _print_json({"model": args.model, "cut": args.cut, "tolerance": tolerance,
                     "nodes": [r.to_dict() for r in reports], "failed": len(failed)})
    else:
        rows = [[r.node, r.versions.get("sparkzoo", "?"), r.versions.get("onnxruntime", "?"),
                 r.versions.get("opencv", "?"), (r.providers or ["?"])[0].replace("ExecutionProvider", ""),
                 "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}",
                 "-" if r.min_cosine is None else f"{r.min_cosine:.6f}", "ok" if r.ok else f"FAIL: {r.problem}"]
                for r in reports]
        _table(rows, ["NODE", "SPARKZOO", "ONNXRUNTIME", "OPENCV", "PROVIDER", "MAX |DIFF|", "MIN COSINE",
                      f"RESULT (cosine >= {tolerance})"])
        print(f"{len(reports) - len(failed)} of {len(reports)} nodes compute the same features as the driver")
    return 12 if failed else 0


def cmd_cluster_env(args: argparse.Namespace) -> int:
    from zoo.cluster import env_archive

    pip_args = tuple(a for link in args.find_links or [] for a in ("--find-links", link)) + (("--no-index",) if args.no_index else ())
    if not args.json:
        print(f"building {args.output} (a fresh environment; this takes a minute) ...", file=sys.stderr)
    built = env_archive.build(args.output, cpu=args.cpu, python=args.python, extras=tuple(args.extra or ()),
                              with_packages=tuple(args.with_packages or ()), pip_args=pip_args)
    if args.json:
        _print_json(built.to_dict())
        return 0
    print(f"{built.path}: {_mib(built.packed_bytes)} packed, {_mib(built.unpacked_bytes)} unpacked on each executor")
    print(f"  contains sparkzoo and {len(built.packages) - 1} pinned dependencies; left out: "
          f"{', '.join(built.left_out)} (the cluster's Spark provides pyspark and py4j; executors never import pandas)")
    print(f"  needs {built.python} on every node (the interpreter is not packed)")
    print(f"  use: spark-submit --archives {built.path}#env --conf spark.pyspark.python=./env/bin/python "
          f"--conf spark.pyspark.driver.python={sys.executable} ...   (client mode: the driver keeps its own Python)")
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on the closed pipe again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="sparkzoo's model zoo: pull, list, inspect, verify and mirror pretrained ONNX models.",
        epilog="Configuration comes from ZOO_* environment variables (see README). Exit codes: "
        "0 ok, 2 usage, 3 bad registry, 4 unknown model, 5 offline miss, 6 download failed, "
        "7 checksum mismatch, 8 cache unusable, 9 invalid model file, 10 stage error, 11 conformance failures, "
        "12 nodes disagree (check-model), 13 no input to work on (featurize, predict), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"sparkzoo {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return p

    p = add("pull", cmd_pull, "download models into the cache (verified) and print their paths")
    p.add_argument("names", nargs="+", metavar="NAME", help="model name, alias or sha256")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = add("ls", cmd_ls, "list the models every registry knows")
    p.add_argument("--cached", action="store_true", help="only models present in the cache")
    p.add_argument("--task", help="only this task, e.g. image-classification, object-detection (a wrong one lists all)")
    p.add_argument("--search", nargs="+", metavar="WORD", help="only models whose name, aliases, description, task or "
                                                              "licence hold every word (any case)")
    p.add_argument("--license", help="only models under this licence, e.g. Apache-2.0 (any case)")
    p.add_argument("--max-size", type=_size, metavar="SIZE", help="only models of at most SIZE (bytes, or 100MB, 2GiB)")

    p = add("info", cmd_info, "show a model's registry entry and cache status")
    p.add_argument("name", metavar="NAME")

    p = add("verify", cmd_verify, "re-hash cached models and rebuild what the cache derived from them (cut models, "
            "layer tables, optimised graphs); quarantine whatever changed")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every cached blob")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = add("rm", cmd_rm, "remove models from the cache")
    p.add_argument("names", nargs="+", metavar="NAME")

    p = add("cache", cmd_cache, "cache location, size, and clean-up of unfinished downloads")
    p.add_argument("action", choices=["dir", "size", "prune"])

    p = add("add", cmd_add, "register an ONNX model (a local file, hf:// or https:// URL) in the user registry "
                            "and cache it")
    p.add_argument("file", metavar="FILE|URL", help="a local .onnx file, hf://ORG/REPO/FILE.onnx[@REV] or https://...")
    p.add_argument("--name", required=True, help="the name to use it by (letters, digits, . _ -); an existing name "
                                                 "needs --replace for another file")
    p.add_argument("--replace", action="store_true", help="register another file under an existing --name (fields "
                                                          "not given again are kept)")
    p.add_argument("--preprocess", help="preset (imagenet, efficientnet-lite, none) or a JSON recipe; default: imagenet "
                                        "for a file, what the source publishes for a URL")
    p.add_argument("--alias", action="append", help="an extra name (repeatable)")
    p.add_argument("--description", help="one line for `zoo ls` (default: the file's name)")
    p.add_argument("--license", help="default: what the source publishes, else unknown")
    p.add_argument("--labels", help="label set, e.g. imagenet, coco-80, or a label file")
    p.add_argument("--detector", choices=DETECTOR_FAMILIES, help="an object detector of this family: its authors' "
                   "preprocessing for the model's input size, decoding and label set (`zoo detect` runs it)")
    p.add_argument("--task", help="what the model does, e.g. image-classification (default; or the existing entry's), "
                                  "feature-extraction, object-detection")

    add("docs", cmd_docs, "where sparkzoo's documentation is installed, and its pages")

    p = add("mirror", cmd_mirror, "export cached models as a mirror folder (DIR/sha256/<hex> + registry.json)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every cached model")

    add("doctor", cmd_doctor, "check the cache, locking, free space, mirrors and hub")
    add("stages", cmd_stages, "list registered pipeline stages: name, class, plugin, params")

    p = add("check", cmd_check, "run the conformance kit on registered stages (a local Spark session)")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every registered stage")
    p.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    p.add_argument("--fuzz-examples", type=int, default=10, help="Hypothesis examples per stage (default 10)")
    p.add_argument("--checks", metavar="CHECK,...", help="only these checks (default: all; `zoo check --help` lists them)")
    p.add_argument("--mutate", action="store_true",
                   help="measure the kit on the named stages instead: derive defective variants of each (a session "
                        "setting read, a frame statistic, a param not saved, ...) and report which checks kill them")

    p = add("cluster-env", cmd_cluster_env,
            "build a relocatable environment archive for executors (spark-submit --archives ENV.tar.gz#env)")
    p.add_argument("output", metavar="ENV.tar.gz")
    p.add_argument("--cpu", action="store_true", help="CPU-only onnxruntime instead of onnxruntime-gpu (much smaller)")
    p.add_argument("--python", help="the base interpreter the nodes have (default: this environment's)")
    p.add_argument("--extra", action="append", help="a sparkzoo extra to include, e.g. text (repeatable)")
    p.add_argument("--with", dest="with_packages", action="append", metavar="PACKAGE",
                   help="another distribution to include, e.g. pandas for your own pandas UDFs (repeatable)")
    p.add_argument("--find-links", action="append", metavar="DIR", help="look for wheels here too (passed to pip)")
    p.add_argument("--no-index", action="store_true", help="no package index: only --find-links (air-gapped)")

    from zoo.cli.featurize import add_arguments

    add_arguments(add("featurize", cmd_featurize, "featurize a folder of images into parquet with a zoo model (Spark)"))
    p = add("check-model", cmd_check_model, "check that every node of a cluster computes the same features for a model")
    p.add_argument("model", metavar="NAME", help="zoo name, alias, sha256: or .onnx path")
    p.add_argument("--master", default="local[*]", help="Spark master URL (default local[*])")
    p.add_argument("--cut", default="1", help="layers dropped from the head (default 1), or a tensor name")
    p.add_argument("--inputs", metavar="DIR", help="reference images (default: two shipped photographs and "
                                                   "generated images, the same bytes on every node)")
    p.add_argument("--tolerance", type=float, help="smallest cosine similarity allowed (default: the registry "
                                                   "entry's tolerance, else 0.9999 fp32, 0.999 int8, 0.99 with "
                                                   "--fast-decode)")
    p.add_argument("--preprocess", default="", metavar="PRESET|JSON",
                   help="as the featurization prepares images: a preset or a JSON recipe (default: the registry's)")
    p.add_argument("--fast-decode", action="store_true", help="check with fastDecode as the featurization uses it")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where executors run the model, as the featurizer's device (default auto); the driver's "
                        "reference is computed on its CPU, and a node where cuda cannot run fails with the reason")
    p.add_argument("--reference", metavar="FILE", help="a stored reference (.npz) to compare every node, the driver "
                                                       "too, with (default: the registry's files.reference, if any)")
    p.add_argument("--write-reference", metavar="FILE", help="store the driver's images and features as a reference "
                                                             "(pin it in a registry entry's files.reference)")
    p.add_argument("--conf", action="append", metavar="KEY=VALUE", help="a Spark setting (repeatable)")
    add_arguments(add("predict", cmd_predict, "what is in each image: class names and scores from a zoo classifier "
                                              "(Spark), printed or written to parquet"), predict=True)
    add_arguments(add("detect", cmd_detect, "what is where in each image: boxes, labels and scores from a zoo object "
                                            "or face detector (Spark), printed, written to parquet, or drawn"),
                  detect=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log.configure(["WARNING", "INFO", "DEBUG"][min(args.verbose, 2)] if args.verbose else None)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at interpreter exit
        return code
    except BrokenPipeError:  # `zoo ... | head`: stop quietly, as command-line tools do on SIGPIPE
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the signal ended
    except ZooError as exc:
        print(f"zoo: error: {capped(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
