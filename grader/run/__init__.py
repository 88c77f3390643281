"""The run library behind `segkit grade` and `segkit collect`, one module per role.

- ``discovery``: which submissions a run grades (the intake step, shards); imports no torch;
- ``config``: the typed seams: ``WorkerConfig`` (one sandboxed worker) and ``GradeSettings``
  (what every grading process of a run shares, across the spawn boundary);
- ``store``: the fingerprint over the inputs of a grade, the result cache, the run manifest;
- ``pool``: trusted grading processes with one retry for a process that dies;
- ``grading``: one run from jobs to results (cache, pool, 0 rows of rejected students);
- ``render``: grades.csv, report.md and feedback from results (a run and `collect` alike).
"""
