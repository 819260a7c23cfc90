"""The numerical core: blocked cross-products in padded size buckets, and the host-side optimiser.

Nothing here knows about formulas or data frames: :mod:`jaxmix.core.structure` turns level codes and
per-row columns into the padded blocks of [Z X y]′W[Z X y] that the compiled objective reads, and
:mod:`jaxmix.core.newton` minimises a compiled value-and-gradient function with bounds.
"""
