"""Where regions run: each target builds the commands of a deployment as data and runs them."""
