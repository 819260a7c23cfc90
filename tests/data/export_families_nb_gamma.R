# glmmTMB / MASS references for jaxmix's negative-binomial and Gamma families
# (tests/test_families_nb_gamma.py).  Usage, from the repository root:
#   Rscript tests/data/export_families_nb_gamma.R
# Data: tests/data/grouseticks_nb.csv and tests/data/gamma_sim.csv (written by export_families_shared.R,
# the team's shared generator, whose lme4/glmmTMB numbers are tests/data/families_reference.json).
# glmmTMB parametrisations: nbinom2 Var = mu + mu^2/theta with sigma(t) = theta; Gamma sigma(t) = the
# coefficient of variation, shape = 1/sigma^2; its "d~(Intercept)" is log(theta) (NB) or log(shape) (Gamma):
# fixef(t)$disp = log(1/sigma(t)^2).
suppressMessages({library(glmmTMB); library(MASS); library(jsonlite)})
G <- read.csv("tests/data/grouseticks_nb.csv"); G$YEAR <- as.character(G$YEAR); G$LOCATION <- as.character(G$LOCATION)
D <- read.csv("tests/data/gamma_sim.csv")
rec <- function(t, family) {
  v <- vcov(t, full = TRUE); dn <- grep("^d~", rownames(v))
  se_logd <- sqrt(v[dn, dn])
  sig <- sigma(t)
  disp <- if (family == "negative_binomial") sig else 1 / sig^2
  se_log_disp <- se_logd  # its "d~(Intercept)" is log(theta) (NB) and log(shape) (Gamma, glmmTMB 1.1.5)
  mu <- fitted(t); y <- model.response(model.frame(t))
  dres <- if (family == "negative_binomial") negative.binomial(disp)$dev.resids(y, mu, 1) else Gamma()$dev.resids(y, mu, 1)
  V <- if (family == "negative_binomial") mu + mu^2 / disp else mu^2
  vc <- VarCorr(t)$cond
  tn <- grep("^theta_", rownames(v))  # log SD of a scalar random effect
  se_log_re_sd <- if (length(tn)) sqrt(diag(v)[tn]) else list()
  list(loglik = as.numeric(logLik(t)), df = attr(logLik(t), "df"), AIC = AIC(t), BIC = BIC(t),
       fixef = as.list(fixef(t)$cond), se = as.list(sqrt(diag(vcov(t)$cond))),
       re_sd = if (length(vc)) unname(sapply(vc, function(m) attr(m, "stddev"))) else list(),
       se_log_re_sd = unname(se_log_re_sd), dispersion = disp, se_dispersion = disp * se_log_disp,
       fitted_head = head(unname(mu), 10),
       pearson_head = head(unname((y - mu) / sqrt(V)), 10),
       deviance_head = head(unname(sign(y - mu) * sqrt(pmax(dres, 0))), 10))
}
res <- list()
res$nb_glmm <- rec(glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), data = G, family = nbinom2()), "negative_binomial")
res$gamma_log_glmm <- rec(glmmTMB(y ~ x + (1 | g), data = D, family = Gamma(link = "log")), "gamma")
res$gamma_inverse_glmm <- rec(glmmTMB(y ~ x + (1 | g), data = D, family = Gamma(link = "inverse"),
                                     start = list(beta = c(0.3, 0))), "gamma")
res$gamma_identity_glmm <- rec(glmmTMB(y ~ 1 + (1 | g), data = D, family = Gamma(link = "identity")), "gamma")
res$gamma_identity_glm <- rec(glmmTMB(y ~ 1, data = D, family = Gamma(link = "identity")), "gamma")
res$nb_glm <- rec(glmmTMB(TICKS ~ YEAR + cHEIGHT, data = G, family = nbinom2()), "negative_binomial")
res$gamma_log_glm <- rec(glmmTMB(y ~ x, data = D, family = Gamma(link = "log")), "gamma")
m <- glm.nb(TICKS ~ YEAR + cHEIGHT, data = G)  # MASS: the same NB GLM by its own ML
res$nb_glm_mass <- list(loglik = as.numeric(logLik(m)), theta = m$theta, se_theta = m$SE.theta,
                        fixef = as.list(coef(m)), se = as.list(sqrt(diag(vcov(m)))))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/families_nb_gamma.json")
cat(length(res), "cases\n")
