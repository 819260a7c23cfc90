# Reference numbers for jaxmix's inference module (tests/test_inference.py, tests/test_anova.py):
# lme4 profile intervals, lme4 likelihood-ratio tables, lmerTest Type III F tests (Satterthwaite and
# Kenward-Roger) and multi-row contrasts.
# Usage (from tests/data): Rscript export_inference.R inference_reference.json
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite) })
out_file <- commandArgs(TRUE)[1]
rd <- function(f) read.csv(f, stringsAsFactors = TRUE)
ss <- rd("sleepstudy.csv"); ss$Subject <- factor(ss$Subject)
# a between-subject factor with three levels (subjects in sorted order get A, B, C, A, B, C, ...)
ss$grp <- factor(c("A", "B", "C")[(as.integer(ss$Subject) - 1L) %% 3L + 1L])
ds <- rd("Dyestuff.csv"); ds2 <- rd("Dyestuff2.csv")
mach <- rd("Machines.csv"); mach$Worker <- factor(mach$Worker)

prof <- function(m, level = 0.95) {
  ci <- suppressWarnings(suppressMessages(confint(m, method = "profile", level = level, oldNames = TRUE)))
  list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]), level = level)
}
res <- list()
m_slope <- lmer(Reaction ~ Days + (Days | Subject), ss)            # REML; lme4 profiles the ML fit
m_int <- lmer(Reaction ~ Days + (1 | Subject), ss)
res$profile <- list(
  sleepstudy_slope = prof(m_slope),
  sleepstudy_intercept = prof(m_int),
  sleepstudy_intercept_90 = prof(m_int, 0.90),
  dyestuff = prof(lmer(Yield ~ 1 + (1 | Batch), ds)),
  dyestuff2_singular = prof(lmer(Yield ~ 1 + (1 | Batch), ds2))
)
lrt <- function(a) list(npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik, deviance = a$deviance,
                        Chisq = a$Chisq, Df = a$Df, p = a[["Pr(>Chisq)"]])
res$lrt <- list(
  sleepstudy_int_vs_slope = lrt(as.data.frame(anova(m_int, m_slope))),         # lme4 refits with ML
  sleepstudy_days_vs_null = lrt(as.data.frame(anova(lmer(Reaction ~ 1 + (1 | Subject), ss), m_int)))
)
# Type III F tests with an interaction (lmerTest), Satterthwaite and Kenward-Roger
m_int3 <- lmer(Reaction ~ Days * grp + (Days | Subject), ss)
a3 <- function(m, ddf) { a <- anova(m, type = 3, ddf = ddf)
  list(terms = rownames(a), F = a[["F value"]], NumDF = a$NumDF, DenDF = a$DenDF, p = a[["Pr(>F)"]],
       SumSq = a[["Sum Sq"]]) }
ct <- function(m, ddf) { s <- summary(m, ddf = ddf)$coefficients
  list(names = rownames(s), estimate = unname(s[, 1]), se = unname(s[, 2]), df = unname(s[, 3]),
       t = unname(s[, 4]), p = unname(s[, 5])) }
# unbalanced factor x factor interaction: rows 1, 8, 15, ... dropped
ssu <- ss[(seq_len(nrow(ss)) - 1L) %% 7L != 0L, ]
ssu$late <- factor(ifelse(ssu$Days >= 5, "yes", "no"))
m_ff <- lmer(Reaction ~ late * grp + (1 | Subject), ssu)
m_mach <- lmer(score ~ Machine + (1 | Worker/Machine), mach)
L <- rbind(c(0, 1, 0), c(0, 1, -1))
ctMD <- function(m, L, ddf) { x <- contest(m, L, joint = TRUE, ddf = ddf)
  list(F = x[["F value"]], NumDF = x$NumDF, DenDF = x$DenDF, p = x[["Pr(>F)"]]) }
res$type3 <- list(
  sleepstudy_days_grp = list(satterthwaite = a3(m_int3, "Satterthwaite"), kenward_roger = a3(m_int3, "Kenward-Roger"),
                             coef_satterthwaite = ct(m_int3, "Satterthwaite"), coef_kenward_roger = ct(m_int3, "Kenward-Roger")),
  sleepstudy_late_grp_unbalanced = list(satterthwaite = a3(m_ff, "Satterthwaite"), kenward_roger = a3(m_ff, "Kenward-Roger"),
                                        coef_satterthwaite = ct(m_ff, "Satterthwaite")),
  machines = list(satterthwaite = a3(m_mach, "Satterthwaite"), kenward_roger = a3(m_mach, "Kenward-Roger"),
                  contrast_L = L, contrast_satterthwaite = ctMD(m_mach, L, "Satterthwaite"),
                  contrast_kenward_roger = ctMD(m_mach, L, "Kenward-Roger"),
                  coef_kenward_roger = ct(m_mach, "Kenward-Roger"))
)
# GLMM covariance-parameter SE (glmmTMB, delta method from log-SD) for cbpp, period numeric as in the CSV
suppressPackageStartupMessages(library(glmmTMB))
cb <- rd("cbpp.csv"); cb$herd <- factor(cb$herd)
g <- glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb, family = binomial)
sr <- summary(g$sdr, "fixed"); th <- sr[rownames(sr) == "theta", , drop = FALSE]
s <- exp(th[1, 1])
res$glmm_covparm <- list(cbpp_numeric_period = list(vcov = s^2, se_vcov = 2 * s^2 * th[1, 2], loglik = as.numeric(logLik(g)),
                         generator = paste("glmmTMB", packageVersion("glmmTMB"))))
res$generator <- paste("lme4", packageVersion("lme4"), "lmerTest", packageVersion("lmerTest"), "pbkrtest", packageVersion("pbkrtest"))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out_file)
