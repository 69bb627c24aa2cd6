"""`orchestrate init`: an inventory written from an app's own navigator.yml(s) and fly.toml, with a proof.

sources reads the files; websocket recognises the cable part; translate writes the inventory's data;
loaded says what Navigator would load from a configuration; proof renders the inventory and compares;
command ties them together for the command line.
"""
