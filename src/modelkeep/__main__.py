from modelkeep.cli.app import main

main()
