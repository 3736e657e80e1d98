"""No execution of model text: answer extraction and equivalence (thinksafe.evaluate.answers) under hypothesis
fuzzing with adversarial strings — Python payloads, huge exponents and factorials, deeply nested or unbalanced
braces, TeX file/shell primitives (\\input, \\write18, \\csname …).

For every example: no exception escapes `grade` / `equivalent`; no payload runs (a sentinel file a payload
would create never appears, a flag it would set stays unset, no eval/exec/sympy-eval sees payload text, and
\\input never reads the file it names); each check returns within its time limit plus slack.
tests/test_evaluate_answers.py holds the fixed nasty-string table and the realistic-answer cases; this file
adds generated structure on top.
"""

from __future__ import annotations

import builtins
import os
import re
import signal
import time
from pathlib import Path
from unittest import mock

import pytest
import sympy.parsing.sympy_parser as sympy_parser
import sympy.physics.units  # noqa: F401 — on import it parses its own unit names: do that before recording
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinksafe.evaluate.answers import CheckTimeout, equivalent, grade, time_limit
from thinksafe.formats import ChatFormat

LIMIT = 0.3  # seconds per check in these tests
SLACK = 1.0  # wall-clock allowance on a loaded shared machine (SIGALRM fires on wall time)
SENTINEL = Path(os.environ.get("TMPDIR", "/tmp")) / f"thinksafe-rce-sentinel-{os.getpid()}"
INPUT_FILE = Path(os.environ.get("TMPDIR", "/tmp")) / f"thinksafe-input-{os.getpid()}.tex"
FLAG = "THINKSAFE_PWNED"
MARKERS = ("PWNED", "rce-sentinel", "__import__", "system", "subprocess", "write18", "lambda")

PAYLOADS = [
    f"__import__('os').system('touch {SENTINEL}')",
    f"__import__('builtins').setattr(__import__('builtins'), '{FLAG}', 1)",
    f"exec(\"open('{SENTINEL}', 'w')\")",
    f"eval(\"__import__('pathlib').Path('{SENTINEL}').touch()\")",
    f"(lambda: __import__('subprocess').call(['touch', '{SENTINEL}']))()",
    "().__class__.__base__.__subclasses__()",
    "Symbol('x').__class__.__mro__[-1].__subclasses__()",
    f"\\input{{{INPUT_FILE}}}",
    f"\\include{{{INPUT_FILE}}}",
    f"\\immediate\\write18{{touch {SENTINEL}}}",
    "\\csname relax\\endcsname",
    "\\def\\x{\\x}\\x",
    "\\newcommand{\\a}{\\a\\a}\\a",
    "\\catcode`\\^=7",
]
ATOMS = st.one_of(
    st.sampled_from(["1", "x", "\\pi", "0", "-1", "\\infty", "e", "i", "\\frac{1}{2}", "9", "10^{100}"]),
    st.sampled_from(PAYLOADS),
    st.integers(-10**30, 10**30).map(str),
    st.text(alphabet="0123456789+-*/^_{}()[]\\,.=<>!|&$ abcxyz", max_size=16),
)


def huge(base, exp, top):
    return f"{base}^{{{exp}^{{{top}}}}}"


EXPONENTS = st.one_of(
    st.builds(huge, st.integers(2, 99), st.integers(2, 10**6), st.integers(2, 10**6)),
    st.builds(lambda n, k: f"{n}" + "!" * k, st.integers(10, 10**6), st.integers(1, 8)),
    st.builds(lambda n: f"({n})!", st.integers(10**4, 10**12)),
    st.builds(lambda n, e: f"{n}e{e}", st.integers(1, 9), st.integers(100, 10**9)),
    st.builds(lambda n: "9**" * n + "9", st.integers(2, 6)),
    st.builds(lambda n: "\\sqrt{" * n + "2" + "}" * n, st.integers(50, 400)),
)
NESTED = st.recursive(
    st.one_of(ATOMS, EXPONENTS),
    lambda inner: st.one_of(
        inner.map(lambda s: "{" + s + "}"),
        st.tuples(inner, inner).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}^{{{t[1]}}}"),
        inner.map(lambda s: f"\\left({s}\\right)"),
        st.lists(inner, min_size=2, max_size=4).map(", ".join),
    ),
    max_leaves=24,
)
BRACES = st.one_of(
    st.integers(1, 20_000).map(lambda n: "{" * n + "1" + "}" * n),  # balanced, very deep
    st.integers(1, 20_000).map(lambda n: "{" * n + "1"),  # never closed
    st.integers(1, 20_000).map(lambda n: "}" * n + "\\boxed{2}"),  # closed first
    st.integers(1, 3_000).map(lambda n: "\\boxed{" * n + "3" + "}" * n),
)
ANSWERS = st.one_of(NESTED, BRACES, st.sampled_from(PAYLOADS))
WRAPS = [
    (ChatFormat(), lambda t: t),
    (ChatFormat(), lambda t: "\\boxed{" + t + "}"),
    (ChatFormat(), lambda t: f"So we get {t}.\nThe final answer is {t}"),
    (ChatFormat("think"), lambda t: f"<think>{t}</think>The answer is $\\boxed{{{t}}}$."),
]


@pytest.fixture(scope="module", autouse=True)
def input_file():
    INPUT_FILE.write_text("7\n")  # if \input were honoured, "\boxed{\input{F}}" would grade equal to 7
    equivalent("x", "y")  # math-verify's one-time import and grammar build run outside any limit: not timed here
    yield
    INPUT_FILE.unlink(missing_ok=True)
    SENTINEL.unlink(missing_ok=True)


class Recorder:
    """Record every string that reaches Python's eval/exec or sympy's parse_expr eval while a check runs."""

    def __init__(self):
        self.seen: list[str] = []

    def wrap(self, fn):
        def recording(source, *args, **kwargs):
            if isinstance(source, str):
                self.seen.append(source)
            return fn(source, *args, **kwargs)

        return recording

    def __enter__(self):
        self.patches = [
            mock.patch.object(builtins, "eval", self.wrap(builtins.eval)),
            mock.patch.object(builtins, "exec", self.wrap(builtins.exec)),
            mock.patch.object(sympy_parser, "eval_expr", self.wrap(sympy_parser.eval_expr)),
        ]
        for p in self.patches:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in reversed(self.patches):
            p.stop()


def check_clean(rec: Recorder, elapsed: float) -> None:
    assert elapsed < LIMIT + SLACK, f"check took {elapsed:.2f} s"
    assert not SENTINEL.exists(), "a payload ran"
    assert not hasattr(builtins, FLAG), "a payload ran"
    leaked = [s for s in rec.seen if any(m in s for m in MARKERS)]
    assert not leaked, f"model text reached eval: {leaked[:3]}"


# Hypothesis' gc callback may be running when the alarm fires; Python ignores (and reports) exceptions raised
# there, and time_limit's repeated alarm ends the check anyway: that report is expected, not a failure.
IGNORED_IN_GC = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_time_limit_survives_a_swallowed_alarm():
    """Library code with a bare `except:` (or a gc callback) swallows the first CheckTimeout: the alarm repeats."""
    swallowed = 0
    t0 = time.monotonic()
    with pytest.raises(CheckTimeout), time_limit(0.1):
        while True:
            try:
                time.sleep(0.01)
            except BaseException:  # what a careless library does
                swallowed += 1
                if swallowed == 1:
                    continue
                raise
    assert swallowed == 2 and time.monotonic() - t0 < 0.1 + SLACK
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left behind


@IGNORED_IN_GC
@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(answer=ANSWERS, wrap=st.sampled_from(WRAPS), style=st.sampled_from(["math", "math", "gsm8k", "choice"]),
       gold=st.sampled_from(["7", "5", "\\frac{1}{2}", "\\left( 3, \\frac{\\pi}{2} \\right)", "x^2+1", "B"]))
def test_grade_never_executes_or_overruns(answer, wrap, style, gold):
    fmt, make = wrap
    with Recorder() as rec:
        t0 = time.monotonic()
        g = grade(make(answer), gold, style, fmt, limit=LIMIT)
        elapsed = time.monotonic() - t0
    assert isinstance(g.correct, bool) and g.status in ("ok", "no-answer", "unparsed", "too-long", "timeout")
    if "\\input" in answer or "\\include" in answer:
        assert not (g.correct and gold == "7" and re.fullmatch(r"\\(input|include)\{[^{}]*\}", g.answer or "")), g
    check_clean(rec, elapsed)


@IGNORED_IN_GC
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(answer=ANSWERS, gold=ANSWERS)
def test_equivalence_of_two_adversarial_strings(answer, gold):
    """References come from data files, not the model, but a hostile or broken file must not run either."""
    with Recorder() as rec:
        t0 = time.monotonic()
        correct, status = equivalent(answer, gold, limit=LIMIT)
        elapsed = time.monotonic() - t0
    assert isinstance(correct, bool) and status in ("ok", "unparsed", "too-long", "timeout")
    check_clean(rec, elapsed)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_alone(payload):
    for response in (f"\\boxed{{{payload}}}", f"The final answer is {payload}", payload):
        with Recorder() as rec:
            t0 = time.monotonic()
            g = grade(response, "7", "math", ChatFormat(), limit=LIMIT)
            elapsed = time.monotonic() - t0
        assert not g.correct, (payload, g)
        check_clean(rec, elapsed)


@pytest.mark.slow
@IGNORED_IN_GC
@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(answer=ANSWERS, wrap=st.sampled_from(WRAPS), style=st.sampled_from(["math", "gsm8k", "choice"]),
       gold=st.sampled_from(["7", "\\frac{1}{2}", "x^2+1"]))
def test_grade_fuzz_long(answer, wrap, style, gold):
    test_grade_never_executes_or_overruns.hypothesis.inner_test(answer, wrap, style, gold)
