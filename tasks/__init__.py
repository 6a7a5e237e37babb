"""Prefect tasks: a decorator and one call into `privgate.stages`, plus evidence.

Every task keeps results in memory only (`persist_result=False`, no cache): stage
outputs hold raw rows, which must never be written to Prefect's result storage.
"""
