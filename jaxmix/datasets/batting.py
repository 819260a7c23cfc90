"""Simulated batting averages of players in day and night games (the seed's 20 players x 20 games)."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_batting", "BATTING_TRUTH"]

#: The simulator's true values: mean average in day games, the night-game effect, and the SDs of the
#: players' true averages and of the game-to-game scatter around them.
BATTING_TRUTH: dict[str, float] = {"mean": 0.265, "night": -0.004, "sd_player": 0.023, "sd_game": 0.010}


def simulate_batting(n_players: int = 20, n_games: int = 20, seed: int = 0) -> pd.DataFrame:
    """Batting averages of 20 players in 20 day or night games; a player random intercept.

    Every player plays every game, so ``night`` varies within players: the team's games are half day,
    half night (in a shuffled order).  ``average = 0.265 + u_player - 0.004 night + e``, rounded to three
    decimals, with e ~ N(0, 0.010²) (game to game) and normal player effects u scaled to mean 0 and
    SD exactly 0.023, so that every seed tells the same story (see :data:`BATTING_TRUTH`).  A least-squares fit of ``average ~ night`` puts the player differences into
    the residual, and its SE of the night effect is about 0.0025; ``average ~ night + (1 | player)``
    compares every player with himself and the SE falls to about 0.0010.  Containment df: 19
    (players − 1) for the intercept, 379 (400 − 20 − 1) for ``night``.

    Columns: ``player`` (``"P01"`` ...), ``game`` (1 ...), ``night`` (0 = day, 1 = night), ``average``.
    The same ``seed`` always gives the same table.
    """
    from ..errors import JaxmixError

    n_p, n_g = int(n_players), int(n_games)
    if n_p < 2 or n_g < 2:
        raise JaxmixError(f"n_players and n_games must be at least 2, got {n_players!r} and {n_games!r}")
    t = BATTING_TRUTH
    rng = np.random.default_rng(seed)
    night_game = rng.permutation(np.arange(n_g) < n_g // 2).astype(int)
    u = rng.normal(0.0, 1.0, size=n_p)
    player_avg = t["mean"] + t["sd_player"] * (u - u.mean()) / u.std(ddof=1)
    width = len(str(n_p))
    players = np.array([f"P{i + 1:0{max(2, width)}d}" for i in range(n_p)])
    p_idx = np.repeat(np.arange(n_p), n_g)
    g_idx = np.tile(np.arange(n_g), n_p)
    night = night_game[g_idx]
    avg = player_avg[p_idx] + t["night"] * night + rng.normal(0.0, t["sd_game"], size=p_idx.size)
    return pd.DataFrame({"player": players[p_idx], "game": g_idx + 1, "night": night,
                         "average": np.round(avg, 3)})
