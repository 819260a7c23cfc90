# Reference numbers for jaxmix's lme4-workflow features (tests/test_contrasts.py, test_emmeans.py,
# test_summary_lmer.py, test_anova_refit.py, test_glmm_profile.py):
# lmerTest contest1D / contest (joint), emmeans marginal means and Tukey pairs (Kenward-Roger and
# Satterthwaite df), lmerTest's summary table, fixed-effect correlations and scaled residual quantiles,
# lme4's anova(m0, m1) with refit = TRUE / FALSE, and lme4's GLMM profile intervals (cbpp).
# Usage (from tests/data): Rscript export_contrasts.R contrasts_reference.json
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(pbkrtest); library(emmeans);
                                 library(jsonlite) })
out_file <- commandArgs(TRUE)[1]
rd <- function(f) read.csv(f, stringsAsFactors = TRUE)
ss <- rd("sleepstudy.csv"); ss$Subject <- factor(ss$Subject)
orth <- rd("Orthodont.csv"); orth$agef <- factor(orth$age)
cbpp <- rd("cbpp.csv"); cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
res <- list()

# ---- contest1D / contestMD ----
m_slope <- lmer(Reaction ~ Days + (Days | Subject), ss)
L <- rbind(c(0, 1), c(1, 5), c(1, -1))
c1 <- function(m, L, ddf) { x <- contest1D(m, L, ddf = ddf, confint = TRUE, level = 0.95)
  list(estimate = x$Estimate, se = x[["Std. Error"]], df = x$df, t = x[["t value"]],
       lower = x$lower, upper = x$upper, p = x[["Pr(>|t|)"]]) }
c1rows <- function(m, L, ddf) { r <- lapply(seq_len(nrow(L)), function(i) c1(m, L[i, , drop = FALSE], ddf))
  lapply(setNames(names(r[[1]]), names(r[[1]])), function(k) sapply(r, `[[`, k)) }
m_ts <- lmer(distance ~ age + Sex + (1 | Subject), orth)   # coefficients (Intercept), age, SexMale
res$contest <- list(
  sleepstudy = list(L = L, satterthwaite = c1rows(m_slope, L, "Satterthwaite"),
                    kenward_roger = c1rows(m_slope, L, "Kenward-Roger")),
  orthodont = list(L = rbind(c(0, 1, 0), c(0, 0, 1), c(0, 1, -1)),
                   satterthwaite = c1rows(m_ts, rbind(c(0, 1, 0), c(0, 0, 1), c(0, 1, -1)), "Satterthwaite"))
)

# ---- emmeans ----
em <- function(e) { s <- as.data.frame(summary(e)); list(level = as.character(s[[1]]), emmean = s$emmean,
  se = s$SE, df = s$df, lower = s$lower.CL, upper = s$upper.CL) }
pr <- function(e, adjust) { s <- as.data.frame(summary(pairs(e, adjust = adjust))); list(contrast = as.character(s$contrast),
  estimate = s$estimate, se = s$SE, df = s$df, t = s$t.ratio, p = s$p.value) }
m_int <- lmer(distance ~ age * Sex + (1 | Subject), orth)
m_fac <- lmer(distance ~ Sex + agef + (1 | Subject), orth)
e_sex_kr <- emmeans(m_int, ~ Sex, lmer.df = "kenward-roger")
e_sex_sat <- emmeans(m_int, ~ Sex, lmer.df = "satterthwaite")
e_sex_at <- emmeans(m_int, ~ Sex, at = list(age = 12), lmer.df = "satterthwaite")
e_age_kr <- emmeans(m_fac, ~ agef, lmer.df = "kenward-roger")
e_age_sat <- emmeans(m_fac, ~ agef, lmer.df = "satterthwaite")
res$emmeans <- list(
  int_sex_kr = em(e_sex_kr), int_sex_sat = em(e_sex_sat), int_sex_at12 = em(e_sex_at),
  fac_age_kr = em(e_age_kr), fac_age_sat = em(e_age_sat),
  fac_age_pairs_tukey_kr = pr(e_age_kr, "tukey"), fac_age_pairs_none_sat = pr(e_age_sat, "none"),
  int_sex_pairs_kr = pr(e_sex_kr, "tukey"),
  mean_age = mean(orth$age)
)

# ---- lmerTest summary ----
s <- summary(m_slope)
cf <- s$coefficients
skr <- summary(m_slope, ddf = "Kenward-Roger")$coefficients
res$summary <- list(
  names = rownames(cf), estimate = unname(cf[, 1]), se = unname(cf[, 2]), df = unname(cf[, 3]),
  t = unname(cf[, 4]), p = unname(cf[, 5]), df_kr = unname(skr[, 3]), se_kr = unname(skr[, 2]),
  corr = unname(cov2cor(as.matrix(vcov(m_slope)))[2, 1]),
  scaled_resid = unname(quantile(residuals(m_slope, type = "pearson", scaled = TRUE))),
  reml = unname(REMLcrit(m_slope))
)

# ---- anova(m0, m1): refit by ML (lme4 default) and refit = FALSE ----
m0 <- lmer(Reaction ~ Days + (1 | Subject), ss)
lrt <- function(a) { a <- as.data.frame(a); list(npar = a$npar, logLik = a$logLik, deviance = a$deviance,
                                                 Chisq = a$Chisq, Df = a$Df, p = a[["Pr(>Chisq)"]]) }
m0x <- lmer(Reaction ~ 1 + (1 | Subject), ss)
res$anova <- list(refit = lrt(anova(m0, m_slope)), norefit = lrt(anova(m0, m_slope, refit = FALSE)),
                  fixed_refit = lrt(anova(m0x, m0)))

# ---- GLMM profile intervals ----
gm <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
ci <- confint(gm, method = "profile", oldNames = TRUE)
gt <- rd("grouseticks.csv"); gt$BROOD <- factor(gt$BROOD); gt$LOCATION <- factor(gt$LOCATION); gt$YEAR <- factor(gt$YEAR)
gp <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), gt, family = poisson)
cip <- confint(gp, method = "profile", oldNames = TRUE)
# a GLMM: link scale, asymptotic (df = Inf); fitted tightly (as export_glmm_tight.R) so that lme4's
# finite-difference Hessian is taken at the optimum
gmt <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial,
             control = glmerControl(tolPwrss = 1e-13, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10)))
eg <- as.data.frame(summary(emmeans(gmt, ~ period)))
res$emmeans$cbpp_period <- list(level = as.character(eg$period), emmean = eg$emmean, se = eg$SE,
                                lower = eg$asymp.LCL, upper = eg$asymp.UCL)
pg <- as.data.frame(summary(pairs(emmeans(gmt, ~ period))))
res$emmeans$cbpp_pairs <- list(contrast = as.character(pg$contrast), estimate = pg$estimate, se = pg$SE,
                               z = pg$z.ratio, p = pg$p.value)
res$glmm_profile <- list(cbpp = list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]),
                                     theta = unname(getME(gm, "theta")), beta = unname(fixef(gm))),
                         grouseticks = list(names = rownames(cip), lower = unname(cip[, 1]), upper = unname(cip[, 2]),
                                            theta = unname(getME(gp, "theta")), beta = unname(fixef(gp))))
write(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), out_file)
