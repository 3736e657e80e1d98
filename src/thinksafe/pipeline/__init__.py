"""`thinksafe run`: one experiment, arms × stages, each stage cached by its key.

    config.py   RunConfig: the YAML / `--section.key` schema, built from the stages' settings dataclasses
    arms.py     the arms: each a recipe of stages with their settings
    plan.py     keys, shared stages and directories, generic over the stage registry
    runner.py   run the plan, write run.json, then the report
"""
