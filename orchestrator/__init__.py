"""Generate, plan and roll out the move of a Navigator app's WebSockets to a lean hub."""
