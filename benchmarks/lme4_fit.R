# Fit one LMM with lme4 and print the numbers as one JSON line (prefixed "LME4JSON ").
#
#   Rscript benchmarks/lme4_fit.R DATA.csv "FORMULA" REML|ML [FACTORS]
#
# FACTORS: comma-separated column names read as factors (grouping factors); default: every
# character column.  Times: library(lme4) load, read.csv, and the lmer() call alone (elapsed).
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 3) stop("usage: lme4_fit.R DATA.csv FORMULA REML|ML [FACTORS]")
path <- args[1]
form <- as.formula(args[2])
reml <- toupper(args[3]) == "REML"
factors <- if (length(args) >= 4 && nzchar(args[4])) strsplit(args[4], ",")[[1]] else character(0)

t_lib <- system.time(suppressPackageStartupMessages(library(lme4)))[["elapsed"]]
t_read <- system.time({
  d <- read.csv(path, stringsAsFactors = TRUE)
  for (f in factors) d[[f]] <- factor(d[[f]])
})[["elapsed"]]
t_fit <- system.time(m <- lmer(form, data = d, REML = reml))[["elapsed"]]

num <- function(x) paste0("[", paste(formatC(as.numeric(x), digits = 17, format = "g"), collapse = ","), "]")
str1 <- function(x) paste0("\"", gsub("\"", "'", x), "\"")
ll <- logLik(m)
conv <- m@optinfo$conv$lme4$messages
out <- paste0(
  "{",
  "\"lme4_version\":", str1(as.character(packageVersion("lme4"))), ",",
  "\"R_version\":", str1(paste(R.version$major, R.version$minor, sep = ".")), ",",
  "\"nobs\":", nobs(m), ",",
  "\"library_seconds\":", t_lib, ",",
  "\"read_seconds\":", t_read, ",",
  "\"lmer_seconds\":", t_fit, ",",
  "\"loglik\":", formatC(as.numeric(ll), digits = 17, format = "g"), ",",
  "\"objective\":", formatC(as.numeric(if (reml) REMLcrit(m) else deviance(m)), digits = 17, format = "g"), ",",
  "\"fixef\":", num(fixef(m)), ",",
  "\"fixef_names\":[", paste(sapply(names(fixef(m)), str1), collapse = ","), "],",
  "\"theta\":", num(getME(m, "theta")), ",",
  "\"sigma\":", formatC(sigma(m), digits = 17, format = "g"), ",",
  "\"feval\":", m@optinfo$feval, ",",
  "\"optimizer\":", str1(m@optinfo$optimizer), ",",
  "\"warnings\":[", paste(sapply(c(conv, m@optinfo$warnings), function(w) str1(as.character(w))), collapse = ","), "]",
  "}"
)
cat("LME4JSON ", out, "\n", sep = "")
