"""Final-answer extraction and equivalence: realistic outputs, real reference solutions, and fuzzing for safety
(no exception escapes, no model text is evaluated, every check ends within its time limit)."""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import threading
import time
from unittest import mock

import pytest
import sympy.parsing.sympy_parser
import sympy.physics.units  # noqa: F401 — imported now: on import it parses its own unit names with parse_expr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinksafe.evaluate.answers import as_number, equivalent, extract, grade, last_boxed, time_limit
from thinksafe.formats import ChatFormat

PLAIN, THINK = ChatFormat(), ChatFormat("think")


@pytest.mark.parametrize(
    "response, gold, style",
    [
        ("We get $x = \\frac{1}{2}$, so the answer is $\\boxed{\\frac{1}{2}}$.", "0.5", "math"),
        ("Dividing, the probability is $\\boxed{0.5}$.", "\\frac{1}{2}", "math"),
        ("So $r = 3$ and $\\theta = \\pi/2$: $\\boxed{(3, \\frac{\\pi}{2})}$", "\\left( 3, \\frac{\\pi}{2} \\right)", "math"),
        ("Expanding gives \\boxed{x^2+2x+1}.", "(x+1)^2", "math"),
        ("The remainder is \\boxed{025}.", "25", "math"),  # AIME zero-padding
        ("Thus $m+n=\\boxed{104}$.", "104", "math"),
        ("The rate is \\boxed{10\\%}.", "10", "math"),
        ("1,000 + 234 = 1,234 apples.\nThe final answer is 1,234", "1234", "gsm8k"),
        ("She makes 9 * 2 = 18 dollars.\nThe final answer is 18 dollars.", "18", "gsm8k"),
        ("9 * $2 = $18 per day.\nThe final answer is $18", "18", "gsm8k"),
        ("**The final answer is $\\boxed{18}$.**", "18", "gsm8k"),
        ("The final answer is [42]", "42", "gsm8k"),  # the template's placeholder, copied literally
        ("16 - 3 - 4 = 9 eggs, and 9 * 2 = 18", "18", "gsm8k"),  # no phrase: the last number
        ("Comparing the options, \\boxed{C}", "C", "choice"),
        ("\\boxed{\\text{(B)}}", "B", "choice"),
        ("Therefore, the answer is (D).", "D", "choice"),
    ],
)
def test_realistic_outputs_are_correct(response, gold, style):
    g = grade(response, gold, style, PLAIN)
    assert g.correct, g


@pytest.mark.parametrize(
    "response, gold, style",
    [
        ("\\boxed{3}", "4", "math"),
        ("\\boxed{2x}", "2", "math"),  # "x" is not a unit
        ("The final answer is 17", "18", "gsm8k"),
        ("\\boxed{Both}", "B", "choice"),
        ("the answer is a bit unclear", "A", "choice"),  # a lowercase word is not a letter choice
    ],
)
def test_wrong_answers_are_wrong(response, gold, style):
    assert not grade(response, gold, style, PLAIN).correct


def test_think_responses_score_the_answer_only():
    assert grade("<think>so it is 5</think>\nThe answer is \\boxed{5}.", "5", "math", THINK).correct
    unclosed = grade("<think>Let me see... \\boxed{5}", "5", "math", THINK)  # ran out of tokens mid-reasoning
    assert (unclosed.correct, unclosed.status, unclosed.answer) == (False, "no-answer", None)
    assert not grade("<think>\\boxed{5}</think> I think it is \\boxed{6}", "5", "math", THINK).correct


def test_extraction_details():
    assert last_boxed("first \\boxed{4}, then \\boxed{5") == "4"  # a truncated last box: the earlier complete one
    assert last_boxed("\\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("\\fbox{7}") == "7"
    assert extract("no boxes here", "math") is None
    assert extract("", "gsm8k") is None
    assert as_number("$1,234.50$") == as_number("1234.5")
    assert as_number("-\\frac{3}{4}") == as_number("-0.75")
    assert as_number("\\frac{1}{0}") is None and as_number("2x") is None and as_number("9" * 100) is None


def test_real_reference_solutions_grade_correct(shared_data):
    """MATH-500's worked solutions end in \\boxed{answer}; GSM8K's with "#### N" (rephrased as the template asks)."""
    math = [json.loads(x) for x in (shared_data / "reasoning/math500.jsonl").read_text().splitlines()[:60]]
    assert all(grade(r["solution"], r["answer"], "math", PLAIN).correct for r in math)
    gsm = [json.loads(x) for x in (shared_data / "reasoning/gsm8k_test.jsonl").read_text().splitlines()[:60]]
    for r in gsm:
        work, gold = r["answer"].split("####")
        assert grade(f"{work.strip()}\nThe final answer is {gold.strip()}", gold.strip(), "gsm8k", PLAIN).correct


# ---------------------------------------------------------------- safety: fuzzing and time limits

PWNED = os.path.join(tempfile.gettempdir(), f"thinksafe-pwned-{os.getpid()}")
NASTY = [
    f"__import__('os').system('touch {PWNED}')",
    f"exec(\"open('{PWNED}','w')\")",
    "9**9**9**9",
    "9^{9^{9^{9}}}",
    "2^{10^{10}}",
    "(10^{100000})!",
    "\\input{/etc/passwd}",
    "\\include{/etc/shadow}",
    "{" * 300 + "1" + "}" * 300,
    "\\frac{1}{0}",
    "1/0",
    "0" * 5000,
    "\\boxed{",
    "}",
    "{",
    "The final answer is ",
    "<think>",
    "</think>",
    "\\left(",
    "\\right)",
    "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
    "\\sqrt{",
    "\\infty",
    "$",
    "1,234",
]
LIMIT = 0.3
real_parse_expr = sympy.parsing.sympy_parser.parse_expr


@pytest.mark.parametrize("nasty", NASTY)
def test_nasty_answers_end_within_the_limit(nasty):
    for response in (f"\\boxed{{{nasty}}}", f"The final answer is {nasty}"):
        t0 = time.monotonic()
        g = grade(response, "5", "math", PLAIN, limit=LIMIT)
        # Bounded, not fast: the slack absorbs a loaded CI box (a full-suite run once took 0.7 s here); an
        # unbounded parse of these runs for minutes.
        assert time.monotonic() - t0 < LIMIT + 2.0
        assert not g.correct
    assert not os.path.exists(PWNED)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=12)), max_size=6),
    wrap=st.sampled_from([  # (format, response around the fuzzed text): most reach math-verify
        (PLAIN, lambda t: t),
        (PLAIN, lambda t: "\\boxed{" + t + "}"),
        (PLAIN, lambda t: f"The final answer is {t}"),
        (THINK, lambda t: f"<think>{t}</think>\\boxed{{{t}}}"),
    ]),
    style=st.sampled_from(["math", "math", "gsm8k", "choice"]),
    gold=st.sampled_from(["5", "\\frac{1}{2}", "\\left( 3, \\frac{\\pi}{2} \\right)", "B"]),
)
def test_fuzzed_responses_never_raise_eval_or_overrun(parts, wrap, style, gold):
    """sympy's parse_expr is an eval. The LaTeX parser hands it number tokens only (sympy.Number("3")); model
    text of any other shape must never reach it."""
    evaluated = []

    def recording(text, *args, **kwargs):
        evaluated.append(text)
        return real_parse_expr(text, *args, **kwargs)

    with mock.patch("math_verify.parser.parse_expr", recording), \
         mock.patch("latex2sympy2_extended.latex2sympy2.parse_expr", recording), \
         mock.patch("sympy.parsing.sympy_parser.parse_expr", recording):
        t0 = time.monotonic()
        g = grade(wrap[1]("".join(parts)), gold, style, wrap[0], limit=LIMIT)
        elapsed = time.monotonic() - t0
    assert isinstance(g.correct, bool) and g.status in ("ok", "no-answer", "unparsed", "too-long", "timeout")
    assert elapsed < LIMIT + 2.0  # bounded, with slack for a loaded box (see above)
    assert all(re.fullmatch(r"[0-9.]+", t) for t in evaluated), evaluated
    assert not os.path.exists(PWNED)


def test_time_limit_restores_an_outer_timer():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        assert equivalent("9^{9^{9^{9}}}", "5", limit=0.2) == (False, "timeout")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 4.0 < remaining < 5.0 and not fired  # the outer alarm is still pending, minus the time spent
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_checks_refuse_to_run_off_the_main_thread():
    errors = []

    def run():
        try:
            with time_limit(1.0):
                pass
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors and "main thread" in str(errors[0])
