from weakstil.cli import main

if __name__ == "__main__":  # decode workers are spawned: they import this module without running the CLI
    main()
