# lme4 fits of y ~ x + (1 + x | g) on the four simulated sets of singular_slopes.csv (random slopes with
# a correlation at +-1 or a variance at 0), REML and ML: logLik and theta, written to
# singular_slopes_lme4.csv.  Run from tests/data: Rscript export_singular_slopes.R
library(lme4)
d <- read.csv("singular_slopes.csv")
out <- c()
for (s in unique(d$set)) {
  for (m in c("REML", "ML")) {
    f <- lmer(y ~ x + (1 + x | g), subset(d, set == s), REML = (m == "REML"))
    th <- getME(f, "theta")
    out <- rbind(out, data.frame(set = s, method = m, loglik = as.numeric(logLik(f)),
                                 theta1 = th[1], theta2 = th[2], theta3 = th[3]))
  }
}
write.csv(out, "singular_slopes_lme4.csv", row.names = FALSE)

# Three-column and two-term models on singular_slopes3.csv: (1 + x + z | g) on t10 (REML), and
# (1 + x | g) + (1 | h) on t16 (ML) and t21 (REML); logLik to singular_slopes3_lme4.csv.
d3 <- read.csv("singular_slopes3.csv")
cases <- list(list("t10", "REML", y ~ x + z + (1 + x + z | g)), list("t16", "ML", y ~ x + z + (1 + x | g) + (1 | h)),
              list("t21", "REML", y ~ x + z + (1 + x | g) + (1 | h)))
out3 <- c()
for (cs in cases) {
  f <- lmer(cs[[3]], subset(d3, set == cs[[1]]), REML = (cs[[2]] == "REML"))
  out3 <- rbind(out3, data.frame(set = cs[[1]], method = cs[[2]], formula = deparse(cs[[3]]),
                                 loglik = as.numeric(logLik(f))))
}
write.csv(out3, "singular_slopes3_lme4.csv", row.names = FALSE)
