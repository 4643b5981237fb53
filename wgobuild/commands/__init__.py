"""One module per ``wgobuild`` command (init, doctor); ``cli.py`` only parses and dispatches."""
