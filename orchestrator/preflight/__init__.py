"""`orchestrate preflight`: audit a Rails app's source for the modes, statically (no Ruby needed).

source (the app tree, bounded reads) -> ruby, javascript, packages, cable_config (linear scanners)
-> facts (what the app says, once) -> rules (what it means for one mode) -> report (text, JSON);
command is the CLI handler, gate the check `orchestrate rollout` makes before the first open stage.
"""
