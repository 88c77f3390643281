"""The grading engine's integrations with the tools around it: they import the engine, never the other way round.

- ``collect``: merge the output folders of sharded runs (`segkit collect`, the Slurm array's last job);
- ``gradebook``: scores into nbgrader's gradebook.db and feedback/, and an LMS CSV (`segkit gradebook`);
- ``gradescope``: stage a Gradescope submission and write its results.json (the autograder zip's
  `run_autograder` runs `python -m integrations.gradescope`).

A package of its own at the top level (not under segkit/): the Gradescope zip ships it beside
`grader/` and `starter/` without any build or proof tool, and the layering reads from the folder
names: integrations -> grader -> starter (tests/test_assignments.py checks the engine's side).
"""
