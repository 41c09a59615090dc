"""The `lgql` command: the entry point that assembles both sides (the API in `app`, the worker in
`workers`), so neither package imports the other."""
