"""Do players bat worse at night?  The seed's 20 players x 20 day/night games.

``jaxmix.datasets.simulate_batting``: every player plays every game, half of them at night.  Players
differ a lot in their average (SD 0.023) and little from game to game (SD 0.010).

* Least squares, ``average ~ night``, leaves the player differences in the residual: the SE of the
  night effect is about 0.0025 and the effect (−0.004 in truth) is not clearly significant.
* With a random player intercept, ``average ~ night + (1 | player)``, each player is compared with
  himself: the SE falls to about 0.0010.
* Containment df (SAS's default for this design): 19 for the intercept (players − 1; it is a
  between-player quantity) and 379 for ``night`` (400 − 20 − 1; it varies within players).

    python examples/batting_day_night.py [--small] [--out DIR]

The same two models from the command line: ``jaxmix run configs/batting_day_night.toml``.
"""
from __future__ import annotations

import argparse
import sys

import jaxmix

NAME = "batting_day_night"


def _fmt(tab) -> str:
    return tab.to_string(float_format=lambda v: f"{v:.5f}", formatters={"p": lambda v: f"{v:.2g}",
                                                                         "df": lambda v: f"{v:.0f}"})


def main(small: bool = False, out: str | None = None, seed: int = 0) -> dict:
    """Fit both models, print the night effect and its SE under each, and save the plots.

    Args:
      small: accepted for a uniform interface; the seed's 400 rows are small already.
      out: folder for the plots (default ``out/examples/batting_day_night``).
      seed: the simulator's seed.

    Returns:
      a dict: ``se_ols``, ``se_mixed``, ``night_ols``, ``night_mixed``, ``df_containment`` (Series:
      Intercept, night), ``df_residual`` (least squares), ``sd_player``, ``sd_residual`` and ``plots``.
    """
    out = out or f"out/examples/{NAME}"
    data = jaxmix.datasets.simulate_batting(n_players=20, n_games=20, seed=seed)
    n_p, n_g = data["player"].nunique(), data["game"].nunique()
    print(f"{n_p} players x {n_g} games ({int(data.groupby('game')['night'].first().sum())} at night), "
          f"{len(data)} rows")

    ols = jaxmix.fit("average ~ night", data)
    print(f"\n== least squares: {ols.formula}")
    print(_fmt(ols.coef_table()[["estimate", "se", "df", "statistic", "p"]]))

    mixed = jaxmix.fit("average ~ night + (1 | player)", data, method="REML")
    print(f"\n== random player intercept: {mixed.formula}  (REML)")
    try:
        table = mixed.coef_table(ddf="containment")
        df_cont = table["df"]
    except jaxmix.JaxmixError as e:  # containment df not available: fall back to the residual df
        print(f"(containment df not available: {e}; showing residual df)")
        table = mixed.coef_table(ddf="residual")
        df_cont = None
    print(_fmt(table[["estimate", "se", "df", "statistic", "p"]]))
    vc = mixed.varcorr
    sd_player = float(vc.loc[vc["group"] == "player", "sdcor"].iloc[0])
    print(f"SD between players {sd_player:.4f}, game to game {mixed.sigma:.4f}")

    se_o, se_m = float(ols.se["night"]), float(mixed.se["night"])
    print(f"\nSE of the night effect: {se_o:.4f} without, {se_m:.4f} with the random player intercept "
          f"({se_o / se_m:.1f} times smaller)")

    paths = []
    try:
        from jaxmix import plots

        paths = plots.save_all(mixed, out)
        print("plots:", ", ".join(str(p) for p in paths))
    except jaxmix.JaxmixError as e:  # matplotlib not installed
        print(f"(no plots: {e})")
    return dict(se_ols=se_o, se_mixed=se_m, night_ols=float(ols.fixef["night"]),
                night_mixed=float(mixed.fixef["night"]), df_containment=df_cont,
                df_residual=float(ols.coef_table()["df"]["night"]), sd_player=sd_player,
                sd_residual=float(mixed.sigma), plots=paths)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small data (the smoke-test size)")
    ap.add_argument("--out", default=None, help=f"folder for the plots (default out/examples/{NAME})")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(sys.argv[1:])
    main(small=a.small, out=a.out, seed=a.seed)
