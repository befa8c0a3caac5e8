"""The Batch API path, in small modules used by the batch executor (gembulk/executors/batch.py).

build    the batch input: requests streamed into JSONL part files, split by rows and bytes
jobs     the service side: upload, create, poll, cancel, list, download, delete, with retries
results  result files: lines indexed by key, each line turned into an Outcome
state    the state file beside OUT (what was submitted, how to rebuild records) and its lock
"""
