"""One module per ``wgobuild`` command (init, doctor, keygen, verify); ``cli.py`` only parses and dispatches."""
