"""Exceptions and warnings raised by jaxmix.

Every problem with the user's input surfaces as a :class:`JaxmixError` (a ``ValueError``) whose
message names the column, term or value at fault, never as a raw JAX/XLA traceback.
"""
import difflib


class JaxmixError(ValueError):
    """Bad input to jaxmix: the message names the column, term, key or value at fault."""


class JaxmixWarning(UserWarning):
    """Something jaxmix changed or could not guarantee (dropped columns, non-convergence...)."""


def did_you_mean(word: str, candidates, fmt: str = "{!r}") -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    word, cands = str(word), [str(c) for c in candidates]
    swapped = [c for c in cands if len(c) > 2 and sorted(c.lower()) == sorted(word.lower()) and c != word]
    close = swapped or difflib.get_close_matches(word, cands, n=1, cutoff=0.6)  # a transposition first
    return f"; did you mean {fmt.format(close[0])}?" if close else ""
