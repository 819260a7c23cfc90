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
