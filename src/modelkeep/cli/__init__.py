"""The command-line face: parse, call one Repo method, print."""
