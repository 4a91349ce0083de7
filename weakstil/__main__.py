from weakstil.cli import main

main()
