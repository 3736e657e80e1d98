"""Final answers of reasoning benchmarks: extraction from a response and equivalence to the reference.

    grade(response, gold, "math", fmt)   # Grade(answer="\\frac{1}{2}", correct=True, status="ok")

Extraction reads the *answer* part of a response (ChatFormat.split): a think response whose reasoning never
closed has no answer and scores wrong. Styles: `math` (last \\boxed{}), `gsm8k` ("The final answer is X",
then \\boxed{}, then the last number), `choice` (a boxed letter A-D, or "answer is (X)").

Equivalence: plain numbers compare exactly as fractions ("1,234", "$18", "18 dollars", "025", "0.5" vs
"\\frac{1}{2}"); anything else goes to math-verify (`parse` with LaTeX extraction, then `verify`).

Model text is never eval'd or sympified here. math-verify's plain-expression extractor runs sympy's
`parse_expr` (an eval), so only its LaTeX extractor is used. One SIGALRM timer covers the whole check (gold
parse, answer parse, verify) and raises a BaseException, which library code catching `Exception` cannot
swallow — and past the limit it repeats every 50 ms, in case a bare `except:` or a gc callback swallowed it.
math-verify's own timeouts are off because they are whole seconds, apply per parse and per comparison (a
check could run 3x the limit), and raise an ordinary Exception. SIGALRM only works in the main thread, so
checks from another thread raise RuntimeError.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from thinksafe.formats import ChatFormat

STYLES = ("math", "gsm8k", "choice")
DEFAULT_LIMIT = 5.0  # seconds per check
MAX_ANSWER_CHARS = 1000  # a longer "final answer" is not one; also bounds the (uninterruptible) regex work

# With its timeouts off, math-verify logs a one-time warning that the caller must time-limit: we do.
logging.getLogger("math_verify").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Grade:
    answer: str | None  # the extracted final answer (None: nothing to extract)
    correct: bool
    status: str  # ok | no-answer | unparsed | too-long | timeout


def grade(response: str, gold: str, style: str, fmt: ChatFormat, limit: float = DEFAULT_LIMIT) -> Grade:
    """Score one response: split off the reasoning, extract the final answer, compare it to `gold`."""
    answer = extract(fmt.split(response)[1], style)
    if answer is None:
        return Grade(None, False, "no-answer")
    if style == "choice":
        return Grade(answer, answer == gold, "ok")
    correct, status = equivalent(answer, gold, limit)
    return Grade(answer, correct, status)


# ---------------------------------------------------------------- extraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL = re.compile(r"final answer is\s*:?[ \t]*([^\n]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_LETTER = re.compile(r"\W*([A-D])\b")
_LETTER_PHRASE = re.compile(r"(?i:answer)(?: is)?\s*:?\s*\(?([A-D])\b")
_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")


def extract(answer: str, style: str) -> str | None:
    """The final answer in `answer` (the response minus its reasoning) for a style, or None."""
    if not answer:
        return None
    if style == "math":
        found = last_boxed(answer) or _final_phrase(answer)
    elif style == "gsm8k":
        numbers = _NUMBER.findall(answer)
        found = _final_phrase(answer) or last_boxed(answer) or (numbers[-1].rstrip(",") if numbers else None)
    elif style == "choice":
        return _letter(answer)
    else:
        raise ValueError(f"answer style '{style}': expected one of {', '.join(STYLES)}")
    return found or None


def last_boxed(text: str) -> str | None:
    """Content of the last balanced \\boxed{…} (or \\fbox{…}); one linear pass to match braces."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    stack, close = [], {}
    for i, c in enumerate(text):
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            close[stack.pop()] = i
    for start in reversed(starts):  # a truncated last box falls back to an earlier complete one
        end = close.get(start - 1)
        if end is not None:
            return text[start:end].strip()
    return None


def _final_phrase(text: str) -> str | None:
    """X in the last "The final answer is X" (markdown, $…$ and a trailing period stripped)."""
    hits = _FINAL.findall(text)
    if not hits:
        return None
    found = hits[-1].strip().strip("*").strip()
    found = (last_boxed(found) or found).rstrip(".").strip()
    if found.startswith("[") and found.endswith("]"):  # the template's "[answer]", copied literally
        found = found[1:-1].strip()
    return found or None


def _letter(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        m = _LETTER.match(_WRAPPER.sub(r"\1", boxed))
        return m.group(1) if m else None
    hits = _LETTER_PHRASE.findall(text)
    return hits[-1] if hits else None


# ---------------------------------------------------------------- equivalence

_FRACTION = re.compile(r"(-)?\\[dt]?frac\{(\d{1,20})\}\{(\d{1,20})\}|(-)?(\d{1,20})/(\d{1,20})")
_DECIMAL = re.compile(
    r"(-)?(?:\\\$|\$|€|£)?\s*(\d{1,3}(?:,\d{3})+|\d{1,30})?(\.\d{1,30})?"  # sign, currency, 1,234 or 1234, .5
    r"(?:\s*(?:\\%|%|\^\\circ)|\s+[A-Za-z]{2,}(?: [A-Za-z]+){0,3})?"  # unit: "%", " dollars", " eggs per day"
)


def as_number(text: str) -> Fraction | None:
    """A plain number (with thousands commas, currency, a unit word, or a simple fraction) as a Fraction."""
    s = _WRAPPER.sub(r" \1", text).replace("\\!", "").replace("\\,", "").replace("\\ ", " ").strip()
    if len(s) > 2 and s[0] == s[-1] == "$":  # $…$ math delimiters, not a currency sign
        s = s[1:-1].strip()
    s = s.rstrip(".").strip()
    if len(s) > 80:
        return None
    if m := _FRACTION.fullmatch(s):
        sign, num, den = (m[1], m[2], m[3]) if m[2] else (m[4], m[5], m[6])
        if int(den) == 0:
            return None
        return -Fraction(int(num), int(den)) if sign else Fraction(int(num), int(den))
    m = _DECIMAL.fullmatch(s)
    if not m or not (m[2] or m[3]):
        return None
    value = Fraction((m[2] or "0").replace(",", "") + (m[3] or ""))
    return -value if m[1] else value


class CheckTimeout(BaseException):
    """Raised by `time_limit`; a BaseException so that `except Exception` in library code lets it through."""


REARM = 0.05  # seconds between repeated alarms once the limit has passed


@contextmanager
def time_limit(seconds: float):
    """Interrupt the block after `seconds` (SIGALRM, main thread). Restores any timer that was running.

    Once the limit has passed, the alarm repeats every REARM seconds until the block has exited: a CheckTimeout
    raised where Python swallows exceptions (a gc callback, a __del__, a bare `except:`) is raised again.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("answer checks must run in the main thread (their time limit uses SIGALRM)")
    active = [True]

    def on_alarm(signum, frame):
        if active[0]:
            signal.setitimer(signal.ITIMER_REAL, REARM)
            raise CheckTimeout

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        while True:  # an alarm landing inside this clean-up is dropped and the clean-up redone
            try:
                active[0] = False  # from here on the handler ignores alarms
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
                if old_delay:  # e.g. pytest-timeout's alarm: give it back what is left
                    signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - t0), 1e-3), old_interval)
                break
            except CheckTimeout:
                continue


def equivalent(answer: str, gold: str, limit: float = DEFAULT_LIMIT) -> tuple[bool, str]:
    """(is `answer` equal to `gold`, status). Numbers compare exactly; the rest via math-verify within `limit`."""
    a, b = as_number(answer), as_number(gold)
    if a is not None and b is not None:
        return a == b, "ok"
    if len(answer) > MAX_ANSWER_CHARS:
        return False, "too-long"
    _warm_up()
    try:
        with time_limit(limit):
            from math_verify import verify

            gold_parsed, answer_parsed = _parse_gold(gold), _parse(answer)
            if not gold_parsed or not answer_parsed:
                return False, "unparsed"
            return bool(verify(list(gold_parsed), answer_parsed, timeout_seconds=None)), "ok"
    except CheckTimeout:
        return False, "timeout"


@lru_cache(maxsize=1)
def _warm_up() -> None:
    """Import math-verify and build its LaTeX grammar (~1 s) once, outside any check's time limit."""
    _parse("1")


def _parse(latex: str) -> list:
    from math_verify import LatexExtractionConfig, parse

    return parse("\\boxed{" + latex + "}", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)


@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> tuple:
    """References repeat across samples; parse each once (a tuple, so cached results can't be mutated)."""
    return tuple(_parse(gold))
