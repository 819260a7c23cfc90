# glmmTMB references for a diag(...) random term in a Poisson GLMM (tests/test_glmm_structures.py).
# Usage, from the repository root:  Rscript tests/data/export_glmm_diag.R
# Writes tests/data/poisson_diag.csv (simulated here: 40 groups, a random intercept SD 0.5 and an
# independent random slope SD 0.3) and tests/data/glmm_diag.json: glmmTMB's fit of
# y ~ x + diag(x | g) (independent intercept and slope variances; lme4's y ~ x + (x || g), also recorded).
suppressMessages({library(glmmTMB); library(lme4); library(jsonlite)})
set.seed(14)
n <- 600; G <- 40
g <- sample(sprintf("g%02d", 1:G), n, TRUE); x <- rnorm(n)
u0 <- rnorm(G, 0, 0.5); u1 <- rnorm(G, 0, 0.3); k <- as.integer(factor(g))
y <- rpois(n, exp(0.5 + 0.3 * x + u0[k] + u1[k] * x))
D <- data.frame(y = y, x = x, g = g)
write.csv(D, "tests/data/poisson_diag.csv", row.names = FALSE)
t <- glmmTMB(y ~ x + diag(x | g), data = D, family = poisson)
v <- vcov(t, full = TRUE); tn <- grep("^theta_", rownames(v))
m <- glmer(y ~ x + (x || g), data = D, family = poisson)
out <- list(
  glmmTMB = list(loglik = as.numeric(logLik(t)), df = attr(logLik(t), "df"), fixef = as.list(fixef(t)$cond),
                 se = as.list(sqrt(diag(vcov(t)$cond))), re_sd = unname(attr(VarCorr(t)$cond$g, "stddev")),
                 se_log_re_sd = unname(sqrt(diag(v)[tn])), version = as.character(packageVersion("glmmTMB"))),
  lme4 = list(loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
              re_sd = unname(sapply(VarCorr(m), function(s) attr(s, "stddev"))),
              version = as.character(packageVersion("lme4"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/glmm_diag.json")
