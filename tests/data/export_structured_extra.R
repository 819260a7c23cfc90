# More reference fits for jaxmix's structured covariances (tests/test_structures.py), beyond
# export_structured.R: random-term structures (nlme 3.1 pdCompSymm / pdDiag over a factor, glmmTMB 1.1.5
# ar1), nlme corAR1 with an integer time covariate that has gaps, and varIdent varying within the
# groups of corAR1 (pairs of rows from different strata).  Usage (from tests/data): Rscript export_structured_extra.R
suppressMessages({library(nlme); library(glmmTMB); library(lmerTest); library(jsonlite)})
M <- read.csv("Machines.csv", stringsAsFactors = TRUE)
S <- read.csv("sleepstudy.csv", stringsAsFactors = FALSE); S$Subject <- as.character(S$Subject)
O <- read.csv("Orthodont.csv", stringsAsFactors = FALSE)
O$Sex <- factor(O$Sex, levels = c("Male", "Female"))
res <- list()
case <- function(m, formula, python, kw = list(), extra = list()) {
  fe <- if (inherits(m, "glmmTMB")) fixef(m)$cond else if (inherits(m, "lme")) fixef(m) else coef(m)
  se <- if (inherits(m, "glmmTMB")) sqrt(diag(vcov(m)$cond)) else sqrt(diag(vcov(m)))
  c(list(formula = formula, python = python, kwargs = kw, method = "REML", loglik = as.numeric(logLik(m)),
         fixef = unname(fe), se = unname(se), sigma = sigma(m)), extra)
}
m <- lme(score ~ Machine, random = list(Worker = pdCompSymm(~ 0 + Machine)), data = M, method = "REML")
vc <- as.matrix(m$modelStruct$reStruct$Worker) * m$sigma^2
res$machines_cs <- case(m, "lme(score ~ Machine, random = list(Worker = pdCompSymm(~0 + Machine)))",
  "score ~ Machine + cs(0 + Machine | Worker)", extra = list(re_var = vc[1, 1], re_rho = vc[1, 2] / vc[1, 1]))
m <- lme(score ~ Machine, random = list(Worker = pdDiag(~ 0 + Machine)), data = M, method = "REML")
vc <- as.matrix(m$modelStruct$reStruct$Worker) * m$sigma^2
res$machines_diag <- case(m, "lme(score ~ Machine, random = list(Worker = pdDiag(~0 + Machine)))",
  "score ~ Machine + diag(0 + Machine | Worker)", extra = list(re_var = unname(diag(vc))))
# (sleepstudy's ar1(0 + fDays | Subject) is not used: glmmTMB 1.1.5 stops there at σ ≈ 0.009 with a
# log-likelihood 2.5 below the optimum jaxmix finds)
O$fage <- factor(O$age)
g <- glmmTMB(distance ~ age + ar1(0 + fage | Subject), data = O, REML = TRUE)
res$orthodont_ar1_glmmTMB <- case(g, "glmmTMB(distance ~ age + ar1(0 + fage | Subject), REML = TRUE)",
  "distance ~ age + ar1(0 + C(age) | Subject)",
  extra = list(re_var = unname(attr(VarCorr(g)$cond$Subject, "stddev")[1])^2,
               re_rho = unname(attr(VarCorr(g)$cond$Subject, "correlation")[2, 1])))
Sg <- S[!(S$Days %in% c(3, 4, 7)) | (S$Subject %in% c("308", "309", "310")), ]
write.csv(Sg[, c("Reaction", "Days", "Subject")], "sleepstudy_gaps.csv", row.names = FALSE)
m <- gls(Reaction ~ Days, correlation = corAR1(form = ~ Days | Subject), data = Sg, method = "REML")
res$sleepstudy_gaps_ar1_gls <- case(m, "gls(Reaction ~ Days, correlation = corAR1(form = ~Days | Subject))",
  "Reaction ~ Days", list(correlation = "ar1(Days | Subject)"),
  extra = list(rho = unname(coef(m$modelStruct$corStruct, unconstrained = FALSE))))
m <- lme(distance ~ age + Sex, random = ~ 1 | Subject, weights = varIdent(form = ~ 1 | fage),
         correlation = corAR1(form = ~ 1 | Subject), data = O, method = "REML")
res$orthodont_varident_age_ar1 <- case(m,
  "lme(distance ~ age + Sex, random = ~1 | Subject, weights = varIdent(form = ~1 | fage), correlation = corAR1())",
  "distance ~ age + Sex + (1 | Subject)", list(variance = "ident(age)", correlation = "ar1(Subject)"),
  extra = list(rho = unname(coef(m$modelStruct$corStruct, unconstrained = FALSE)),
               var_ratios = as.list(coef(m$modelStruct$varStruct, unconstrained = FALSE, allCoef = TRUE))))
# standard errors of the covariance parameters on the scale jaxmix reports, by the delta method:
# glmmTMB's sdreport (theta = log SD, betad = log sigma^2 for the gaussian family) and nlme's apVar
# (log SD, log SD ratio, log sigma; a finite-difference Hessian, so agreement to ~1e-3 only)
g <- glmmTMB(score ~ Machine + diag(0 + Machine | Worker), data = M, REML = TRUE)
par <- g$sdr$par.fixed; sdp <- sqrt(diag(g$sdr$cov.fixed))
v <- exp(2 * par[names(par) == "theta"])
res$se_machines_diag_glmmTMB <- list(python = "score ~ Machine + diag(0 + Machine | Worker)",
  estimate = c(unname(v), exp(par[["betad"]])),
  se = c(unname(2 * v * sdp[names(sdp) == "theta"]), exp(par[["betad"]]) * sdp[["betad"]]))
m <- lme(distance ~ age + Sex, random = ~ 1 | Subject, weights = varIdent(form = ~ 1 | Sex), data = O, method = "REML")
ap <- m$apVar; pr <- attr(ap, "Pars"); sp <- sqrt(diag(ap))
res$se_orthodont_varident_nlme <- list(python = "distance ~ age + Sex + (1 | Subject)", kwargs = list(variance = "ident(Sex)"),
  estimate = unname(c(exp(2 * pr[1]), exp(2 * pr[3]), exp(pr[2]))),
  se = unname(c(2 * exp(2 * pr[1]) * sp[1], 2 * exp(2 * pr[3]) * sp[3], exp(pr[2]) * sp[2])))
# Satterthwaite df (lmerTest 3.1) of lme4 models equal to the structured ones: CS across Machine within
# Worker is (1 | Worker) + (1 | Worker:Machine) (rho >= 0), diag(0 + Machine | Worker) is one term per
# machine's dummy; the df do not depend on how the covariance parameters are parametrised
m <- lmerTest::lmer(score ~ Machine + (1 | Worker) + (1 | Worker:Machine), data = M, REML = TRUE)
res$satterthwaite_machines_cs <- list(python = "score ~ Machine + cs(0 + Machine | Worker)",
  loglik = as.numeric(logLik(m)), df = unname(coef(summary(m))[, "df"]),
  anova_ddf = anova(m)[["DenDF"]], anova_F = anova(m)[["F value"]])
for (l in c("A", "B", "C")) M[[l]] <- as.numeric(M$Machine == l)
m <- lmerTest::lmer(score ~ Machine + (0 + A | Worker) + (0 + B | Worker) + (0 + C | Worker), data = M, REML = TRUE)
res$satterthwaite_machines_diag <- list(python = "score ~ Machine + diag(0 + Machine | Worker)",
  loglik = as.numeric(logLik(m)), df = unname(coef(summary(m))[, "df"]),
  anova_ddf = anova(m)[["DenDF"]], anova_F = anova(m)[["F value"]])
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), "structured_extra.json")
cat(length(res), "cases\n")
