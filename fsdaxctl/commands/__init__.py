"""One module per subcommand. Thin: parse options, call the library, render."""
