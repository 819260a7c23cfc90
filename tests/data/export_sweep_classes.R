# lme4 fits of three outcomes on an unbalanced sleepstudy (levels in three classes of equal Z'Z
# blocks), for tests/test_lmm_classes.py.
# Usage: Rscript tests/data/export_sweep_classes.R tests/data/sweep_classes_reference.json
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
d <- read.csv("tests/data/sleepstudy.csv")
subj <- sort(unique(d$Subject))
# subjects 1-6 lose day 9, subjects 7-9 lose day 0: classes {1-6}, {7-9}, {10-18}
drop <- (d$Subject %in% subj[1:6] & d$Days == 9) | (d$Subject %in% subj[7:9] & d$Days == 0)
d <- d[!drop, ]
d$y1 <- d$Reaction
d$y2 <- d$Reaction * (1 + d$Days / 20)
d$y3 <- 100 * log(d$Reaction) + 2 * d$Days
res <- list()
for (y in c("y1", "y2", "y3")) for (reml in c(TRUE, FALSE)) {
  m <- lmer(as.formula(paste(y, "~ Days + (Days | Subject)")), data = d, REML = reml,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 0.2, rhoend = 1e-10)))
  res[[paste(y, if (reml) "REML" else "ML", sep = "_")]] <- list(
    loglik = as.numeric(logLik(m)), fixef = unname(fixef(m)), se = unname(sqrt(diag(as.matrix(vcov(m))))),
    theta = unname(getME(m, "theta")), sigma = sigma(m))
}
write_json(list(nobs = nrow(d), fits = res), out, digits = NA, auto_unbox = TRUE, pretty = TRUE)
