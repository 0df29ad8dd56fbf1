"""Tools of the demo, the chaos run and the bench: seed data and the invariants of a finished run.

No app imports them (the import-linter contracts say so); they import the apps.
"""
