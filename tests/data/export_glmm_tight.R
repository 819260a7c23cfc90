# lme4 GLMM fits with a tight PIRLS tolerance (tolPwrss = 1e-13, bobyqa rhoend = 1e-10).
# lme4's default PIRLS tolerance leaves its Laplace deviance ~5e-4 above the exact value on cbpp,
# which moves the estimates by ~2e-3 SE and the finite-difference SEs by ~1%; these fits remove that.
# Usage: Rscript export_glmm_tight.R OUT.json   (run from tests/data)
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
ctrl <- glmerControl(tolPwrss = 1e-13, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
cbpp <- read.csv("cbpp.csv")
grouse <- read.csv("grouseticks.csv")
grouse$BROOD <- factor(grouse$BROOD); grouse$LOCATION <- factor(grouse$LOCATION); grouse$YEAR <- factor(grouse$YEAR)
rec <- function(m, extra = list()) {
  re <- as.data.frame(ranef(m, condVar = TRUE))
  c(list(loglik = as.numeric(logLik(m)), fixef = unname(fixef(m)), se = unname(sqrt(diag(as.matrix(vcov(m))))),
         theta = unname(getME(m, "theta")),
         ranef = list(group = as.character(re$grpvar), level = as.character(re$grp), mode = re$condval, condsd = re$condsd)), extra)
}
res <- list()
for (lk in c("logit", "probit", "cloglog")) {
  m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial(link = lk), control = ctrl)
  res[[paste0("cbpp_", lk)]] <- rec(m, list(formula = "incidence ~ period + (1 | herd)", trials = "size", link = lk))
}
m <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), data = grouse, family = poisson, control = ctrl)
res[["grouseticks"]] <- rec(m, list(formula = "TICKS ~ C(YEAR) + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"))
# a binary (0/1) response with an offset-free probit: cbpp expanded to Bernoulli rows
rows <- do.call(rbind, lapply(seq_len(nrow(cbpp)), function(i) data.frame(herd = cbpp$herd[i], period = cbpp$period[i],
  y = c(rep(1, cbpp$incidence[i]), rep(0, cbpp$size[i] - cbpp$incidence[i])))))
write.csv(rows, "cbpp_binary.csv", row.names = FALSE)
m <- glmer(y ~ period + (1 | herd), data = rows, family = binomial, control = ctrl)
res[["cbpp_binary"]] <- rec(m, list(formula = "y ~ period + (1 | herd)", link = "logit"))
writeLines(toJSON(list(generator = paste("lme4", packageVersion("lme4")), cases = res), auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
