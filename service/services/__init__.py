"""Use cases: enrol, submit, process, search. Each runs inside one database transaction."""
