"""The job queue: submissions become jobs, workers claim them under a lease and record results.

It lives in the registry's own database instead of a queue library: none of them claims jobs
with leases on both SQLite (one file, nothing to install) and PostgreSQL (several workers on
several machines), and the results must be written in the same transaction as the completion.
"""
