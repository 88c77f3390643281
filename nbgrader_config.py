"""nbgrader configuration: this repository is also an nbgrader course directory.

`solutions/` is nbgrader's source directory and `notebooks/` its release directory, so
`nbgrader generate_assignment fcn --force` writes the same student notebook as
`make generate` (which uses nbgrader's preprocessors directly, without a database).
"""

c = get_config()  # noqa: F821  (injected by nbgrader)
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Fast-mode training cells can take a while on a loaded machine (nbgrader's default is 30 s).
c.Execute.timeout = 600
