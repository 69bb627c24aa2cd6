"""The staged rollout: steps as data, a pure plan, gates, a journal, and the one loop with effects."""
