"""Marginal models by generalized estimating equations (:func:`jaxmix.gee.estimate.fit_gee`)."""
