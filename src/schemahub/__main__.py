from schemahub.cli.main import main

main()
