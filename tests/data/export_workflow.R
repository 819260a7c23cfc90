# lme4 numbers for jaxmix's lme4 workflow (tests/test_workflow.py): getME Z/Lambda/theta/u/b, condVar,
# predict(newdata, re.form = NA / ~(1|g)), poly()/scale() transforms, glmer with a proportion response
# and weights, and summaries of simulate() (use.u = FALSE).
# Usage: Rscript export_workflow.R OUT.json   (run from tests/data)
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
lctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12))
gctrl <- glmerControl(tolPwrss = 1e-13, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
sleep <- read.csv("sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
pen <- read.csv("Penicillin.csv"); pen$plate <- factor(pen$plate); pen$sample <- factor(pen$sample)
cbpp <- read.csv("cbpp.csv"); cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)

sparse_summary <- function(M) {
  M <- as(M, "CsparseMatrix")
  D <- as.matrix(M)
  list(dim = dim(M), nnz = length(M@x), colsums = unname(colSums(D)), rowsums = unname(rowSums(D)),
       dense_first = unname(D[1:min(6, nrow(D)), 1:min(6, ncol(D)), drop = FALSE]))
}
postvar <- function(m) lapply(ranef(m, condVar = TRUE), function(r) {
  pv <- attr(r, "postVar"); list(dim = dim(pv), values = as.numeric(pv)) })
getme <- function(m) list(
  Z = sparse_summary(getME(m, "Z")), Lambda = sparse_summary(t(getME(m, "Lambdat"))),
  theta = unname(getME(m, "theta")), u = unname(getME(m, "u")), b = unname(as.numeric(getME(m, "b"))),
  beta = unname(getME(m, "beta")), sigma = sigma(m), X_colsums = unname(colSums(getME(m, "X"))))
res <- list()

m1 <- lmer(Reaction ~ Days + (Days | Subject), sleep, control = lctrl)
nd1 <- data.frame(Days = c(0, 4.5, 9, 12), Subject = factor(c("308", "309", "372", "999")))
res$sleepstudy <- c(getme(m1), list(
  postvar = postvar(m1), fitted = unname(fitted(m1)),
  newdata = list(Days = nd1$Days, Subject = as.character(nd1$Subject)),
  predict_all = unname(predict(m1, nd1, allow.new.levels = TRUE)),
  predict_fixed = unname(predict(m1, nd1, re.form = NA)),
  vcov = unname(as.matrix(vcov(m1)))))

m2 <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen, control = lctrl)
nd2 <- data.frame(plate = c("a", "b", "x"), sample = c("A", "F", "C"))
res$penicillin <- c(getme(m2), list(
  postvar = postvar(m2),
  newdata = list(plate = nd2$plate, sample = nd2$sample),
  predict_all = unname(predict(m2, nd2, allow.new.levels = TRUE)),
  predict_plate = unname(predict(m2, nd2, re.form = ~ (1 | plate), allow.new.levels = TRUE)),
  predict_sample = unname(predict(m2, nd2, re.form = ~ (1 | sample), allow.new.levels = TRUE)),
  predict_fixed = unname(predict(m2, nd2, re.form = NA))))

# transforms: the new data reuse the fit's poly() coefficients and scale()'s centre and scale
m3 <- lmer(Reaction ~ poly(Days, 2) + (1 | Subject), sleep, control = lctrl)
m4 <- lmer(Reaction ~ scale(Days) + log(Days + 1) + factor(Days > 4) + (1 | Subject), sleep, control = lctrl)
nd3 <- data.frame(Days = c(0, 2.5, 11), Subject = factor(c("308", "309", "372")))
res$transforms <- list(
  poly = list(fixef = unname(fixef(m3)), loglik = as.numeric(logLik(m3)),
              poly_first = unname(poly(sleep$Days, 2)[1:10, ]),
              predict_fixed = unname(predict(m3, nd3, re.form = NA)), predict_all = unname(predict(m3, nd3))),
  scale_log = list(fixef = unname(fixef(m4)), loglik = as.numeric(logLik(m4)),
                   predict_fixed = unname(predict(m4, nd3, re.form = NA))),
  newdata = list(Days = nd3$Days, Subject = as.character(nd3$Subject)))

# binomial: proportion response with weights = number of trials; factor response
g1 <- glmer(incidence / size ~ period + (1 | herd), cbpp, weights = size, family = binomial, control = gctrl)
g2 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial, control = gctrl)
res$cbpp_prop <- c(getme(g1), list(fixef = unname(fixef(g1)), loglik = as.numeric(logLik(g1)),
                                   loglik_cbind = as.numeric(logLik(g2)), eta = unname(predict(g1)),
                                   postvar = postvar(g1)))
g4 <- glmer(cbind(incidence, size - incidence) ~ period + offset(log(size) / 10) + (1 | herd), cbpp,
            family = binomial, control = gctrl)
nd4 <- data.frame(period = factor(c("1", "3"), levels = levels(cbpp$period)), size = c(5, 40), herd = factor(c("1", "2")))
res$cbpp_offset <- list(fixef = unname(fixef(g4)), loglik = as.numeric(logLik(g4)),
                        newdata = list(period = as.character(nd4$period), size = nd4$size, herd = as.character(nd4$herd)),
                        predict_fixed = unname(predict(g4, nd4, re.form = NA)),
                        predict_all = unname(predict(g4, nd4)))
set.seed(1)
bin <- data.frame(g = factor(rep(1:12, each = 10)), x = rep(seq(-1, 1, length.out = 10), 12))
bin$y <- factor(ifelse(rbinom(120, 1, plogis(0.3 + 1.2 * bin$x + rnorm(12)[bin$g])) == 1, "yes", "no"))
g3 <- glmer(y ~ x + (1 | g), bin, family = binomial, control = gctrl)
res$factor_response <- list(data = list(g = as.character(bin$g), x = bin$x, y = as.character(bin$y)),
                            fixef = unname(fixef(g3)), loglik = as.numeric(logLik(g3)))

# simulate(), use.u = FALSE: per-row means and variances over many simulations
sim_summary <- function(m, nsim) {
  set.seed(42)
  s <- simulate(m, nsim = nsim, use.u = FALSE)
  # a cbind(k, n - k) response simulates a two-column matrix per draw: keep the successes
  s <- if (is.matrix(s[[1]])) sapply(s, function(x) x[, 1]) else as.matrix(s)
  list(nsim = nsim, row_mean = unname(rowMeans(s)), row_var = unname(apply(s, 1, var)),
       overall_mean = mean(s), overall_var = var(as.numeric(s)))
}
res$simulate <- list(sleepstudy = sim_summary(m1, 4000))
gp <- glmer(TICKS ~ YEAR + (1 | BROOD), transform(read.csv("grouseticks.csv"), YEAR = factor(YEAR),
            BROOD = factor(BROOD)), family = poisson, control = gctrl)
res$simulate$grouseticks <- c(sim_summary(gp, 4000), list(fixef = unname(fixef(gp)), theta = unname(getME(gp, "theta"))))
res$simulate$cbpp <- sim_summary(g2, 4000)
res$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, matrix = "rowmajor"), out)
