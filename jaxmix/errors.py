"""Exceptions and warnings raised by jaxmix.

Every problem with the user's input surfaces as a :class:`JaxmixError` (a ``ValueError``) whose
message names the column, term or value at fault, never as a raw JAX/XLA traceback.
"""


class JaxmixError(ValueError):
    """Bad input to jaxmix: the message names the column, term, key or value at fault."""


class JaxmixWarning(UserWarning):
    """Something jaxmix changed or could not guarantee (dropped columns, non-convergence...)."""
