# Satterthwaite df of structured nlme fits from emmeans (its own Satterthwaite for lme / gls objects:
# the gradient of vcov(beta) in the variance parameters with their covariance lme$apVar / gls$apVar),
# for tests/test_structures_df.py.  Usage, from the repository root:
#   Rscript tests/data/export_structured_df.R
# Writes tests/data/structured_df.json: per model, the EMMs of Sex at the mean age (the linear functions
# intercept + mean(age)*age (+ Sex)) with their SE and Satterthwaite df.  apVar is a finite-difference
# Hessian, so these df carry numerical error of a few tenths of a percent.
suppressMessages({library(nlme); library(emmeans); library(jsonlite)})
d <- read.csv("tests/data/Orthodont.csv"); d$Sex <- factor(d$Sex, levels = c("Male", "Female"))
fits <- list(
  varident_lme = lme(distance ~ age + Sex, random = ~ 1 | Subject, data = d, weights = varIdent(form = ~ 1 | Sex),
                     method = "REML"),
  ar1_lme = lme(distance ~ age + Sex, random = ~ 1 | Subject, data = d, correlation = corAR1(form = ~ 1 | Subject),
                method = "REML"),
  cs_gls = gls(distance ~ age + Sex, data = d, correlation = corCompSymm(form = ~ 1 | Subject), method = "REML"))
out <- lapply(fits, function(m) {
  e <- summary(emmeans(m, ~ Sex, mode = "satterthwaite"))
  list(loglik = as.numeric(logLik(m)), sex = as.character(e$Sex), emmean = e$emmean, se = e$SE, df = e$df,
       mean_age = mean(d$age))
})
out$versions <- list(nlme = as.character(packageVersion("nlme")), emmeans = as.character(packageVersion("emmeans")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/structured_df.json")
