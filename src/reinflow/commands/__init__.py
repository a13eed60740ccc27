"""One module per ``reinflow`` command; each ``run(argv) -> exit code`` (dispatched by ``reinflow.cli``)."""
