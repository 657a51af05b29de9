from fsdaxctl.cli import main

main()
