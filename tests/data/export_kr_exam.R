# Kenward-Roger reference on a model larger than 3,000 rows (tests/test_kr_large.py): mlmRev's Exam
# data (4,059 pupils in 65 schools), a random intercept and slope per school, REML; pbkrtest's
# adjusted covariance (vcovAdj), per-coefficient KR df (Lb_ddf) and the joint KR F test of schgend.
# Usage (from tests/data): Rscript export_kr_exam.R   (writes Exam.csv and kr_exam.json)
suppressPackageStartupMessages({ library(lme4); library(pbkrtest); library(mlmRev); library(jsonlite) })
write.csv(Exam[, c("school", "normexam", "standLRT", "sex", "schgend")], "Exam.csv", row.names = FALSE)
ex <- read.csv("Exam.csv", stringsAsFactors = TRUE); ex$school <- factor(ex$school)  # sorted levels, as jaxmix
m <- lmer(normexam ~ standLRT + sex + schgend + (standLRT | school), ex, REML = TRUE)
t0 <- proc.time()[["elapsed"]]
Vadj <- vcovAdj(m)
secs <- proc.time()[["elapsed"]] - t0
V <- as.matrix(Vadj)
p <- length(fixef(m))
df <- sapply(seq_len(p), function(j) { L <- matrix(0, 1, p); L[j] <- 1; Lb_ddf(L, vcov(m), Vadj) })
L2 <- rbind(c(0, 0, 0, 1, 0), c(0, 0, 0, 0, 1))
kr <- KRmodcomp(m, L2)$test
res <- list(names = names(fixef(m)), beta = unname(fixef(m)), theta = unname(getME(m, "theta")),
            sigma = sigma(m), se = unname(sqrt(diag(as.matrix(vcov(m))))), se_kr = unname(sqrt(diag(V))),
            df_kr = df, vcov_kr = unname(V), F_schgend = kr["Ftest", "stat"], ddf_schgend = kr["Ftest", "ddf"],
            p_schgend = kr["Ftest", "p.value"], F_scaling = kr["FtestU", "stat"], pbkrtest_seconds = secs)
write(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), "kr_exam.json")
