from damselfly.cli.main import main

main()
