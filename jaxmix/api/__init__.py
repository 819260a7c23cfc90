"""The public verbs built on every layer below: ``fit`` (one outcome), ``fit_many``, ``bootstrap``,
``anova``."""
