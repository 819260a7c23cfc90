"""Results: the fitted model (:class:`jaxmix.results.mixed.MixedResults`), the sweep of many outcomes,
and what is computed from a fit alone (predictions, simulations, getME, conditional variances).

Methods that need a higher layer (inference tables, refits, the bootstrap) are registered by that
layer (:func:`jaxmix.results.mixed.register_extension`), so this layer imports none above it."""
