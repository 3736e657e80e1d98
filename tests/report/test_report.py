"""`thinksafe report`: from a fabricated run directory with the stages' real file schemas, and from a tiny run."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from thinksafe.errors import InputError
from thinksafe.report import columns, load_run, write_report

PAPER = ["harmbench", "strongreject", "wildjailbreak", "xstest", "aime24", "gsm8k", "math500", "gpqa-diamond"]
KIND = {"xstest": "overrefusal", "aime24": "reasoning", "gsm8k": "reasoning", "math500": "reasoning", "gpqa-diamond": "reasoning"}


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def bench_entry(name: str, value: float, half: float) -> dict:
    kind = KIND.get(name, "safety")
    return {"kind": kind, "metric": {"safety": "harmful_response_rate", "overrefusal": "over_refusal_rate"}.get(kind, "pass@1"),
            "value": value, "ci95": [value - half, value + half], "n": 20, "unknown": 0,
            "judge": "math-verify" if kind == "reasoning" else "llama-guard:meta-llama/Llama-Guard-3-8B",
            "prompts": 20, "sampling": {}, "model": {}, "tokens": {"prompt": 100, "completion": 400, "truncated": 0},
            "seconds": {"generate": 1.0}}


def records(name: str, unsafe: bool) -> list[dict]:
    kind = KIND.get(name, "safety")
    out = []
    for i in range(2):
        text = ("Sure, here is how: step 1 …" if unsafe else "I can't help with that.") if kind != "reasoning" else "42"
        resp = {"sample": 0, "text": f"{text} ({name} {i})", "finish_reason": "stop", "prompt_tokens": 5, "completion_tokens": 9}
        if kind == "reasoning":
            out.append({"id": f"{name}{i}", "prompt": f"Problem {i} of {name}", "gold": "42", "meta": {}, "score": 1.0,
                        "responses": [{**resp, "answer": "42", "correct": True, "check": "ok"}]})
        else:
            label = "benign" if kind == "overrefusal" else "harmful"
            verdict = {"label": "unsafe" if unsafe and label == "harmful" else "safe", "score": None,
                       "refused": not unsafe, "guard": "llama-guard", "raw": ""}
            out.append({"id": f"{name}{i}", "prompt": f"Prompt {i} of {name}", "label": label, "meta": {},
                        "responses": [{**resp, "verdict": verdict, "refused": not unsafe}]})
    return out


def fabricate(root: Path) -> Path:
    """A run dir laid out as `thinksafe run` writes it: three arms, the star1 arm missing AIME24, thinksafe's
    synthesis shared with thinksafe+kl."""
    arms = {
        "initial": dict(values=dict.fromkeys(PAPER, 0.5), stages=["evaluate"]),
        "thinksafe": dict(values={**dict.fromkeys(PAPER, 0.2), "harmbench": 0.3, "aime24": 0.3},
                          stages=["prompts", "synthesize", "train", "evaluate", "shift"]),
        "thinksafe+kl": dict(values=dict.fromkeys(PAPER, 0.1), stages=["prompts", "synthesize", "train", "evaluate", "shift"]),
        "star1": dict(values={n: 0.1 for n in PAPER if n != "aime24"}, stages=["train", "evaluate", "shift"]),
    }
    stages: dict[str, dict] = {}
    for arm, spec in arms.items():
        stages[arm] = {}
        for kind in spec["stages"]:
            owner = "thinksafe" if arm == "thinksafe+kl" and kind in ("prompts", "synthesize", "shift") else arm
            d = root / owner / kind
            key = f"{owner}-{kind}"
            stages[arm][kind] = {"dir": f"{owner}/{kind}", "key": key, "owner": owner}
            write(d / "done.json", {"key": key})
            write(d / "ledger.json", {"stage": kind, "arms": [owner], "key": key, "wall_seconds": 60.0,
                                      "device": "cpu (2 cores, 2 threads)", "tokens_generated": 1000 if kind in ("synthesize", "evaluate") else 0,
                                      "tokens_prompt": 0, "tokens_forward": 0, "tokens_trained": 5000 if kind == "train" else 0,
                                      "params": 10**6, "flops": 1e12, "flops_formula": "FLOPs ≈ 2·N …", "resumed": False})
            if kind == "evaluate":
                benches = {n: bench_entry(n, v, 0.05) for n, v in spec["values"].items()}
                write(d / "results.json", {"model": {"model": "m", "adapter": None}, "judge": {"guard": "llama-guard"},
                                           "limit": 20, "seed": 0, "benchmarks": benches, "averages": {}})
                for n in spec["values"]:
                    (d / f"{n}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(n, unsafe=arm == "initial")))
            if kind == "synthesize":
                write(d / "stats.json", {"per_label": {"harmful": {"prompts": 10, "kept": 9, "yield_pct": 90.0},
                                                       "benign": {"prompts": 10, "kept": 6, "yield_pct": 60.0}}})
            if kind == "train":
                write(d / "train_stats.json", {"examples": 15, "harmful": 9, "benign": 6, "mode": "lora"})
            if kind == "shift":
                write(d / "shift.json", {"perplexity": 1.8 if owner == "thinksafe" else 6.5, "examples": 15})
    write(root / "run.json", {"config_file": "configs/x.yaml", "config": {"model": {"model": "Qwen/Qwen3-0.6B"}},
                              "arms": list(arms), "arm_help": {a: f"help for {a}" for a in arms}, "stages": stages})
    return root


def md_table(md: str) -> list[list[str]]:
    start = md.index("## Results")
    lines = [x for x in md[start:].splitlines() if x.startswith("|")]
    rows = []
    for x in lines:
        if x.startswith("|---"):
            if rows and rows[-1][0] != "arm":
                break
            continue
        if rows and x.startswith("| arm | train examples"):
            break
        rows.append([LINK.sub(r"\1", c.strip()) for c in x.strip("|").split(" | ")])
    return rows


LINK = re.compile(r"^\[(.*)\]\((.*)\)$")  # a cell linked to the file its number came from


def test_fabricated_run_paper_table_ledger_plots_examples(tmp_path):
    run_dir = fabricate(tmp_path / "run")
    paths = write_report(run_dir)
    md = paths["md"].read_text()
    header, *rows = md_table(md)
    assert header == ["arm", "HarmBench", "StrongREJECT", "WildJailbreak", "XSTest", "Safety avg", "AIME24", "GSM8K",
                      "MATH500", "GPQA", "Reasoning avg"]
    by_arm = {r[0]: dict(zip(header, r)) for r in rows}
    assert list(by_arm) == ["initial", "thinksafe", "thinksafe+kl", "star1"]
    assert by_arm["thinksafe"]["HarmBench"] == "30.0 ± 5.0"
    assert by_arm["thinksafe"]["Safety avg"] == "22.5 ± 2.5"  # (30+20+20+20)/4; sqrt(4·5²)/4
    assert by_arm["star1"]["AIME24"] == "—" and by_arm["star1"]["Reasoning avg"] == "—"  # missing stays missing
    assert by_arm["initial"]["GPQA"] == "50.0 ± 5.0"
    assert "llama-guard:meta-llama/Llama-Guard-3-8B" in md and "math-verify" in md  # the judge is named

    # cost ledger: data size, yield, perplexity, tokens, per-stage wall time; shared stages starred
    ledger = md[md.index("## Cost ledger"):md.index("## Plots")]
    ts = next(x for x in ledger.splitlines() if x.startswith("| thinksafe |"))
    assert "15 (9 harmful, 6 benign)" in ts and "9/10 (90%) / 6/10 (60%)" in ts and "1.80" in ts and "| 300 |" in ts
    kl = next(x for x in ledger.splitlines() if x.startswith("| thinksafe+kl |"))
    assert "60*" in kl  # its synthesis is thinksafe's
    assert "6.50" in next(x for x in ledger.splitlines() if x.startswith("| star1 |"))

    # examples: the same prompt before (initial) and after
    ex = md[md.index("## Examples"):]
    assert "### thinksafe" in ex and "### initial" not in ex
    assert "before (initial, unsafe):\n\n```text\nSure, here is how" in ex
    assert "after (thinksafe, safe):\n\n```text\nI can't help" in ex

    # self-contained html: every plot embedded as a real PNG, no external references
    html = paths["html"].read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 4
    assert all(base64.b64decode(b).startswith(b"\x89PNG\r\n\x1a\n") for b in images)
    assert "report_files/" not in html and "<table>" in html and "30.0 ± 5.0" in html
    for name in ("tradeoff", "benchmarks", "perplexity", "walltime"):
        assert paths[f"png:{name}"].stat().st_size > 1000


def test_columns_follow_paper_order_and_only_what_ran(tmp_path):
    run_dir = fabricate(tmp_path / "run")
    for arm in ("initial", "thinksafe", "thinksafe+kl", "star1"):
        owner = arm
        res_path = run_dir / owner / "evaluate" / "results.json"
        res = json.loads(res_path.read_text())
        res["benchmarks"] = {n: res["benchmarks"][n] for n in ("gsm8k", "xstest", "strongreject") if n in res["benchmarks"]}
        res["benchmarks"]["demo-harmful"] = bench_entry("demo-harmful", 0.4, 0.1)
        res_path.write_text(json.dumps(res))
    cols = columns(load_run(run_dir))
    assert [c.title for c in cols] == ["StrongREJECT", "XSTest", "Demo harmful", "Safety avg", "GSM8K", "Reasoning avg"]
    md = write_report(run_dir)["md"].read_text()
    assert "Safety avg: mean of StrongREJECT, XSTest only (the paper averages all four)" in md


def test_not_a_run_dir_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match="not a thinksafe run directory"):
        load_run(tmp_path)
    r = subprocess.run([sys.executable, "-m", "thinksafe", "report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "not a thinksafe run directory" in r.stderr and "Traceback" not in r.stderr


def test_report_from_the_tiny_run(request):
    run_dir = request.getfixturevalue("tiny_run")["run"]
    (run_dir / "report.html").unlink()
    r = subprocess.run([sys.executable, "-m", "thinksafe", "report", str(run_dir)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"report → {(run_dir / 'report.html').resolve()}" in r.stdout.replace("\n", "")
    assert "Demo harmful" in r.stdout and "initial" in r.stdout and "thinksafe" in r.stdout
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    header, *rows = md_table((run_dir / "report.md").read_text())
    assert header == ["arm", "Demo harmful", "Demo XSTest-style"]
    assert [r[0] for r in rows] == ["initial", "thinksafe"]
    results = json.loads((run_dir / "thinksafe" / "evaluate" / "results.json").read_text())
    value = results["benchmarks"]["demo-harmful"]["value"]
    assert rows[1][1].startswith(f"{100 * value:.1f}")


def test_trace_health_and_the_refusal_audit_per_arm(tmp_path):
    """A think model's run: the trace health of each arm (initial = before training) and the refusal rate of
    each arm's kept synthesized data, as evaluate and synthesize write them."""
    run_dir = fabricate(tmp_path / "run")
    health = {"initial": (0.9, 0.1, 800.0), "thinksafe": (0.6, 0.4, 1500.0), "thinksafe+kl": (0.8, 0.2, 900.0),
              "star1": (0.95, 0.05, 700.0)}
    for arm, (closed, cut, tokens) in health.items():
        path = run_dir / arm / "evaluate" / "results.json"
        res = json.loads(path.read_text())
        for entry in res["benchmarks"].values():
            share = 1.0 if entry["kind"] == "reasoning" else 0.5  # the safety group's traces close half as often
            entry["trace"] = {"responses": 20, "closed": closed * share, "truncated": cut, "reasoning_tokens": tokens,
                              "answer_tokens": 50.0}
            entry["samples"] = 8 if entry["kind"] == "reasoning" else 1
        path.write_text(json.dumps(res))
    stats = run_dir / "thinksafe" / "synthesize" / "stats.json"
    s = json.loads(stats.read_text())
    s["per_label"]["harmful"].update(kept_refusals=9, refusal_pct=100.0)
    s["per_label"]["benign"].update(kept_refusals=1, refusal_pct=16.7)
    stats.write_text(json.dumps(s))

    md = write_report(run_dir)["md"].read_text()
    assert "Samples per prompt: safety 1, reasoning 8; every rate is the mean over all samples" in md
    section = md[md.index("## Trace health"):md.index("## Cost ledger")]
    rows = {r.split(" | ")[0].strip("| "): [c.strip() for c in r.strip("|").split(" | ")]
            for r in section.splitlines() if r.startswith("| ") and not r.startswith("| arm")}
    assert rows["thinksafe"] == ["thinksafe", "30.0", "40.0", "1,500", "50", "60.0", "40.0", "1,500", "50"]
    assert rows["initial"][1:5] == ["45.0", "10.0", "800", "50"]  # the before
    ledger = md[md.index("## Cost ledger"):md.index("## Plots")]
    assert "refusals in kept data (harmful / benign)" in ledger
    assert "| 100% / 17% |" in next(x for x in ledger.splitlines() if x.startswith("| thinksafe |"))


def test_a_plain_model_run_has_no_trace_health_section(tmp_path):
    assert "## Trace health" not in write_report(fabricate(tmp_path / "run"))["md"].read_text()


def test_tradeoff_bars_draw_the_actual_percentile_interval(tmp_path):
    """An interval hugging 0 % (a harmful rate of 2 % with CI [0, 10] %) is drawn as it is: the bar stops at 0 and
    reaches 10, where value ± half-width would draw [-3, 7]."""
    from thinksafe.report.plots import tradeoff

    run_dir = tmp_path / "run"
    write(run_dir / "run.json", {"config": {}, "arms": ["a"], "stages": {"a": {"evaluate": {"dir": "a/evaluate", "key": "k"}}}})
    write(run_dir / "a/evaluate/done.json", {"key": "k"})
    benches = {"demo-harmful": bench_entry("harmbench", 0.02, 0) | {"ci95": [0.0, 0.10]},
               "demo-xstest": bench_entry("xstest", 0.30, 0) | {"kind": "overrefusal", "ci95": [0.22, 0.33]}}
    write(run_dir / "a/evaluate/results.json", {"benchmarks": benches, "averages": {}})
    run = load_run(run_dir)
    fig = tradeoff(run, columns(run))
    xbar, ybar = fig.axes[0].containers[0].lines[2]  # the x and y error-bar line collections
    (x_lo, _), (x_hi, _) = xbar.get_segments()[0]
    (_, y_lo), (_, y_hi) = ybar.get_segments()[0]
    assert (x_lo, x_hi) == pytest.approx((22.0, 33.0))
    assert (y_lo, y_hi) == pytest.approx((0.0, 10.0))


def test_every_number_links_to_the_file_it_came_from(tmp_path):
    """Results cells link to the arm's results.json holding that value; the ledger's seconds to ledger.json."""
    run_dir = fabricate(tmp_path / "run")
    paths = write_report(run_dir)
    md = paths["md"].read_text()
    results = md[md.index("## Results"):md.index("## Cost ledger")]
    header = ["arm", "harmbench", "strongreject", "wildjailbreak", "xstest"]
    checked = 0
    for line in results.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if not line.startswith("|") or cells[0] not in ("initial", "thinksafe"):
            continue
        for name, c in zip(header[1:], cells[1:5]):
            text, link = LINK.match(c).groups()
            value = json.loads((run_dir / link).read_text())["benchmarks"][name]["value"]
            assert text.startswith(f"{100 * value:.1f} ± ")
            checked += 1
    assert checked == 8
    ledger = md[md.index("## Cost ledger"):]
    links = re.findall(r"\]\(([^)]+ledger\.json)\)", ledger)
    assert links and all((run_dir / p).is_file() for p in links)
    html_links = re.findall(r"<a href='([^']+)'>", paths["html"].read_text())
    assert html_links and all((run_dir / p).is_file() for p in html_links)


def test_report_compares_several_runs_in_one_table(tmp_path, capsys):
    """Two runs (two copies of the fabricated run, one with other numbers) → one table of RUN/ARM rows, plots."""
    from thinksafe.cli import main

    a = fabricate(tmp_path / "runs" / "qwen")
    b = fabricate(tmp_path / "other" / "r1")
    res = b / "thinksafe" / "evaluate" / "results.json"
    data = json.loads(res.read_text())
    data["benchmarks"]["harmbench"] = bench_entry("harmbench", 0.123, 0.02)
    res.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as e:
        main(["report", str(a), str(b), "--out", str(tmp_path / "cmp")])
    assert e.value.code == 0
    header, *rows = md_table((tmp_path / "cmp" / "report.md").read_text())
    by_row = {r[0]: dict(zip(header, r)) for r in rows}
    assert list(by_row)[:4] == ["qwen/initial", "qwen/thinksafe", "qwen/thinksafe+kl", "qwen/star1"]
    assert by_row["qwen/thinksafe"]["HarmBench"] == "30.0 ± 5.0"
    assert by_row["r1/thinksafe"]["HarmBench"] == "12.3 ± 2.0"
    assert (tmp_path / "cmp" / "report_files" / "tradeoff.png").is_file()
    assert "qwen/thinksafe" in capsys.readouterr().out


def test_report_of_several_runs_without_out_is_one_line(tmp_path, capsys):
    from thinksafe.cli import main

    a, b = fabricate(tmp_path / "a"), fabricate(tmp_path / "b")
    with pytest.raises(SystemExit) as e:
        main(["report", str(a), str(b)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--out" in err
