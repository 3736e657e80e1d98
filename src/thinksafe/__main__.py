from thinksafe.cli import main

if __name__ == "__main__":  # vLLM spawns workers that re-import the entry point
    main()
