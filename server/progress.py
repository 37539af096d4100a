"""One line per finished round, as the coordinator's console shows it (simulated or deployed)."""

from __future__ import annotations


def round_line(summary, results, wall: float, rounds: int) -> str:
    eps = [r.metrics.get("epsilon", float("nan")) for r in results]
    budget = results[0].metrics.get("epsilon_budget", float("nan")) if results else float("nan")
    loss = f"loss {summary.train_loss:.3f} | " if summary.train_loss == summary.train_loss else ""
    cond = f"head cond {max(summary.head_condition.values()):.2f} | " if summary.head_condition else ""
    spent = f"epsilon max {max(eps):.2f} of {budget:g}" if eps else "no site answered"
    return (f"round {summary.round}/{rounds} | {summary.n_sites} sites | {loss}"
            f"alignment {summary.alignment_before:+.3f} -> {summary.alignment_after:+.3f} | {cond}{spent} | {wall:.1f} s")
