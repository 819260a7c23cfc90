# lme4 offsets, predictions, residuals of every type and deviance() (tests/test_offsets.py).
# Data: sleepstudy.csv, cbpp.csv and offsets_poisson.csv (a small simulated Poisson set with exposures
# and prior weights).  Tight optimiser tolerances (GLMMs: PIRLS as in export_glmm_tight.R).
# Usage: Rscript export_residuals.R OUT.json   (run from tests/data)
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
ctrl <- glmerControl(tolPwrss = 1e-13, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
lctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12))
types <- c("response", "pearson", "deviance", "working")
resid_all <- function(m) setNames(lapply(types, function(t) unname(residuals(m, type = t))), types)
rec <- function(m, newdata = NULL) {
  r <- list(loglik = as.numeric(logLik(m)), fixef = unname(fixef(m)), theta = unname(getME(m, "theta")),
            fitted = unname(fitted(m)), residuals = resid_all(m), residuals_default = unname(residuals(m)),
            deviance = suppressWarnings(deviance(m)))
  if (isLMM(m)) {
    r$sigma <- sigma(m)
    r$deviance_ml <- deviance(m, REML = FALSE)
  }
  if (!is.null(newdata)) {
    r$predict <- unname(predict(m, newdata = newdata, allow.new.levels = TRUE))
    r$predict_fixed <- unname(predict(m, newdata = newdata, re.form = NA))
    if (!isLMM(m)) r$predict_response <- unname(predict(m, newdata = newdata, type = "response",
                                                        allow.new.levels = TRUE))
  }
  r
}
res <- list()

# Gaussian: an offset column (offset=), an offset(...) term and prior weights.  lme4's predict() with
# newdata adds the offset(...) terms but not the offset= column (lme4 issue #447); jaxmix adds both.
ss <- read.csv("sleepstudy.csv")
ss$Subject <- factor(ss$Subject)
ss$off2 <- 5 * (ss$Days %% 2)
ss$w <- 1 + (ss$Days %% 3)
nd <- data.frame(Days = c(0, 3, 7, 2), Subject = c("308", "309", "999", "308"), off2 = c(1, -2, 3, 0))
m <- lmer(Reaction ~ Days + offset(20 * cos(Days)) + (Days | Subject), ss, offset = off2, weights = w,
          control = lctrl)
res[["sleep_offsets"]] <- c(rec(m, nd), list(
  formula = "Reaction ~ Days + offset(20 * np.cos(Days)) + (Days | Subject)", offset = "off2", weights = "w",
  newdata = list(Days = nd$Days, Subject = as.integer(nd$Subject), off2 = nd$off2)))

# Poisson: offset(log(expo)) in the formula, prior weights
po <- read.csv("offsets_poisson.csv")
po$g <- factor(po$g)
nd <- data.frame(x = c(0, 1, -1, 0.5), g = factor(c(1, 2, 99, 12)), expo = c(1, 2.5, 4, 0.5))
m <- glmer(y ~ x + offset(log(expo)) + (1 | g), po, family = poisson, weights = w, control = ctrl)
res[["poisson_offset"]] <- c(rec(m, nd), list(
  formula = "y ~ x + offset(np.log(expo)) + (1 | g)", weights = "w",
  newdata = list(x = nd$x, g = as.integer(as.character(nd$g)), expo = nd$expo)))

# binomial with trials (cbind): residuals use the proportion y/n and prior weights n
cbpp <- read.csv("cbpp.csv")
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial,
           control = ctrl)
res[["cbpp_logit"]] <- c(rec(m), list(formula = "incidence ~ period + (1 | herd)", trials = "size"))
writeLines(toJSON(list(generator = paste("lme4", packageVersion("lme4")), cases = res), auto_unbox = TRUE,
                  digits = NA, pretty = TRUE), out)
